/**
 * Batches: several prompts, several images per prompt, per-prompt negatives, with and without TGATE, against
 * diffusers v0.30.3 (+ T-GATE ab2a88f) runs (test/fixtures/ext2/batch), quirks included: SDXL's interleaved
 * time ids, PixArt's tiled masks. DeepCache has no batched reference: a batch must equal its rows run alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { describeReplays, ext2Json, pipelineCache, type IndexFlag, type ReplayCase, type Tensors } from './support/replay.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { PixArtAlphaPipeline } from '../src/pipelines/pixart-alpha.js';
import type { UNetForwardOptions } from '../src/models/unet-2d-condition.js';

const index = ext2Json<Record<string, { baseline_batch_per_step: number[]; tgate_batch_per_step: number[]; flags: IndexFlag[] }>>('ext2/batch/index.json');
const schedIndex = readPythonJson<{ cases: Record<string, { config_passed: Record<string, unknown> }> }>(fixture('schedulers/index.json'));
const DDIM = { cls: 'DDIMScheduler', config: schedIndex.cases.ddim_sd.config_passed };
const TGATE = { gateStep: 7, spInterval: 5, fiInterval: 1, warmUp: 2 };

const pipes = pipelineCache((name) => loadPipeline(fixture('pipelines', name)));
const pipeline = (name: string) => pipes.get(name);
afterAll(() => pipes.release());

const sdxlSizes = {
  originalSize: [96, 96], cropsCoordsTopLeft: [0, 0], targetSize: [96, 96],
  negativeOriginalSize: [80, 112], negativeCropsCoordsTopLeft: [4, 8], negativeTargetSize: [96, 96],
};

interface Case extends ReplayCase { pipe: string }
const CASES: Case[] = (['baseline', 'tgate_gate7'] as const).flatMap((v): Case[] => {
  const tg = v === 'baseline' ? undefined : TGATE;
  const pick = (k: string) => ({ batches: index[k][v === 'baseline' ? 'baseline_batch_per_step' : 'tgate_batch_per_step'], flags: tg && index[k].flags });
  return [
    {
      file: `ext2/batch/sd15_tiny_ddim_p2x2_${v}`, pipe: 'sd15_tiny', scheduler: DDIM, ...pick('sd15_tiny_ddim_p2x2'),
      options: (g: Tensors) => ({
        promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], numImagesPerPrompt: 2,
        latents: g['in.latents'], numInferenceSteps: 10, guidanceScale: 7.5, height: 64, width: 64, tgate: tg,
      }),
    },
    {
      file: `ext2/batch/sdxl_tiny_euler_p2_${v}`, pipe: 'sdxl_tiny', ...pick('sdxl_tiny_euler_p2'),
      options: (g: Tensors) => ({
        promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
        pooledPromptEmbeds: g['in.pooled_prompt_embeds'], negativePooledPromptEmbeds: g['in.negative_pooled_prompt_embeds'],
        latents: g['in.latents'], numInferenceSteps: 10, guidanceScale: 5, height: 96, width: 96, tgate: tg, ...sdxlSizes,
      }),
    },
    {
      file: `ext2/batch/pixart_alpha_dpm_p2_${v}`, pipe: 'pixart_tiny', ...pick('pixart_alpha_dpm_p2'),
      options: (g: Tensors) => ({
        promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
        promptAttentionMask: g['in.prompt_attention_mask'], negativePromptAttentionMask: g['in.negative_prompt_attention_mask'],
        latents: g['in.latents'], numInferenceSteps: 10, guidanceScale: 4.5, height: 96, width: 96, tgate: tg,
      }),
    },
  ];
});

describeReplays('batched runs reproduce diffusers', CASES, ['ext2/batch/sd15_tiny_ddim_p2x2_tgate_gate7', 'ext2/batch/sdxl_tiny_euler_p2_tgate_gate7'], pipes, (c) => c.pipe);

describe('what the denoiser receives per row', () => {
  beforeAll(() => useBackend('wasm'));

  /** Records the UNet's inputs of every call, then restores its forward. */
  async function unetCalls(pipe: StableDiffusionPipeline, run: () => Promise<unknown>): Promise<UNetForwardOptions[]> {
    const calls: UNetForwardOptions[] = [];
    const forward = pipe.unet.forward.bind(pipe.unet);
    pipe.unet.forward = (o: UNetForwardOptions) => {
      calls.push({ ...o, timeIds: o.timeIds && tf.keep(o.timeIds.clone()), textEmbeds: o.textEmbeds && tf.keep(o.textEmbeds.clone()) });
      return forward(o);
    };
    try {
      await run();
    } finally {
      delete (pipe.unet as Partial<StableDiffusionPipeline['unet']>).forward;
    }
    return calls;
  }

  test('SDXL: time ids [neg, pos] per prompt (rows swap), negative ids after the gate, pooled [neg…, pos…]', async () => {
    const pipe = (await pipeline('sdxl_tiny')) as StableDiffusionPipeline;
    const c = CASES.find((x) => x.file.endsWith('sdxl_tiny_euler_p2_tgate_gate7'))!;
    const { loadFixture } = await import('./support/helpers.js');
    const g = await loadFixture(`${c.file}.safetensors`);
    const calls = await unetCalls(pipe, async () => (await pipe.generate({ ...c.options(g), numInferenceSteps: 8, outputType: 'latent' } as never)).latents.dispose());
    expect(relL2T(calls[0].timeIds!, g['add_time_ids.0'])).toBe(0);
    expect(relL2T(calls[0].textEmbeds!, g['add_text_embeds.0'])).toBe(0);
    expect(relL2T(calls[7].timeIds!, g['add_time_ids.after_gate'])).toBe(0);
    expect(relL2T(calls[7].textEmbeds!, g['add_text_embeds.after_gate'])).toBe(0);
    calls.forEach((k) => tf.dispose([k.timeIds!, k.textEmbeds!]));
    Object.values(g).forEach((t) => t.dispose());
  }, 120_000);

  test('PixArt, 2 prompts × 2 images: embeddings repeated per prompt, masks tiled (diffusers 0.30.3)', async () => {
    const pipe = (await pipeline('pixart_tiny')) as PixArtAlphaPipeline;
    const embeds = tf.tidy(() => tf.stack([tf.fill([12, 32], 1), tf.fill([12, 32], 2)]));
    const mask = tf.tensor2d([[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]]);
    const seen: { rows: number[]; masks: number[] }[] = [];
    const forward = pipe.transformer.forward.bind(pipe.transformer);
    pipe.transformer.forward = (o) => {
      seen.push({ rows: Array.from(tf.tidy(() => tf.mean(o.encoderHiddenStates, [1, 2])).dataSync()), masks: Array.from(tf.tidy(() => tf.sum(o.encoderAttentionMask!, 1)).dataSync()) });
      return forward(o);
    };
    const negative = tf.zerosLike(embeds);
    try {
      const before = tf.memory().numTensors;
      const { latents } = await pipe.generate({
        promptEmbeds: embeds, promptAttentionMask: mask, negativePromptEmbeds: negative, negativePromptAttentionMask: mask,
        numImagesPerPrompt: 2, numInferenceSteps: 1, height: 64, width: 64, outputType: 'latent', seed: 1,
      });
      latents.dispose();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      delete (pipe.transformer as Partial<PixArtAlphaPipeline['transformer']>).forward;
    }
    // Guidance rows: [negatives ×4, positives ×4]; embeddings p0,p0,p1,p1, masks m0,m1,m0,m1.
    expect(seen[0].rows.slice(4)).toEqual([1, 1, 2, 2]);
    expect(seen[0].masks).toEqual([3, 8, 3, 8, 3, 8, 3, 8]);
    tf.dispose([embeds, mask, negative]);
  }, 120_000);
});

describe('a batch equals each row run alone (DeepCache, TGATE, guidance rescale: no reference with batches)', () => {
  beforeAll(() => useBackend('wasm'));
  test.each([
    ['DeepCache', { deepcache: { cacheInterval: 3 } }],
    ['DeepCache + TGATE', { deepcache: { cacheInterval: 3 }, tgate: { gateStep: 4, spInterval: 1, warmUp: 0 } }],
    ['guidance rescale (per row, as diffusers)', { guidanceRescale: 0.7 }],
  ])('%s', async (name, extra) => {
    const pipe = (await pipeline('sd15_tiny')) as StableDiffusionPipeline;
    const shipped = pipe.scheduler;
    pipe.scheduler = schedulerFromConfig(DDIM.config, DDIM.cls);
    const embeds = tf.tidy(() => tf.randomNormal([2, 77, 32], 0, 1, 'float32', 5));
    const neg = tf.tidy(() => tf.randomNormal([2, 77, 32], 0, 1, 'float32', 6));
    const lat = tf.tidy(() => tf.randomNormal([2, 4, 8, 8], 0, 1, 'float32', 7));
    const call = { numInferenceSteps: 8, guidanceScale: 7.5, height: 64, width: 64, outputType: 'latent' as const, ...extra };
    const before = tf.memory().numTensors;
    const both = (await pipe.generate({ ...call, promptEmbeds: embeds, negativePromptEmbeds: neg, latents: lat })).latents;
    for (let r = 0; r < 2; r++) {
      const row = (t: tf.Tensor) => tf.slice(t, r, 1);
      const [e, n, l] = [row(embeds), row(neg), row(lat)];
      const alone = (await pipe.generate({ ...call, promptEmbeds: e, negativePromptEmbeds: n, latents: l })).latents;
      const got = row(both);
      const err = relL2T(got, alone);
      console.log(`${name}: batch row ${r} vs alone rel-L2 ${err.toExponential(2)}`);
      expect(err).toBeLessThanOrEqual(1e-5);
      tf.dispose([e, n, l, alone, got]);
    }
    both.dispose();
    expect(tf.memory().numTensors).toBe(before);
    pipe.scheduler.dispose();
    pipe.scheduler = shipped;
    tf.dispose([embeds, neg, lat]);
  }, 300_000);
});
