/**
 * Prompts in batches and clipSkip (diffusers' encode_prompt) against the recorded CLIP outputs, what the UNet gets
 * per row when prompts are strings, and progress through denoising and decoding.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { StableDiffusionXLPipeline } from '../src/pipelines/stable-diffusion-xl.js';
import type { UNetForwardOptions } from '../src/models/unet-2d-condition.js';
import type { GenerationProgress } from '../src/pipelines/denoise.js';

const PROMPTS = ['a photo of a cat', 'the red dog and a cat', ''];
let sd: StableDiffusionPipeline;
let sdxl: StableDiffusionXLPipeline;
beforeAll(async () => {
  await useBackend('wasm');
  sd = (await loadPipeline(fixture('pipelines/sd15_tiny'))) as StableDiffusionPipeline;
  sdxl = (await loadPipeline(fixture('pipelines/sdxl_tiny'))) as StableDiffusionXLPipeline;
}, 120_000);
afterAll(() => { sd.dispose(); sdxl.dispose(); });

test('a batch of prompts encodes as transformers does (SD: last state; SDXL: both penultimates, pooled)', async () => {
  const g = await loadFixture('goldens/clip_tiny_sd15_forward.safetensors');
  const t1 = await loadFixture('goldens/clip_tiny_sdxl_te1_forward.safetensors');
  const t2 = await loadFixture('goldens/clip_tiny_sdxl_te2_forward.safetensors');
  const before = tf.memory().numTensors;
  const e = sd.encodePrompt(PROMPTS);
  const xl = sdxl.encodePromptXL(PROMPTS);
  const want = tf.concat([t1.hidden_states_penultimate, t2.hidden_states_penultimate], -1);
  const errs = [relL2T(e, g.last_hidden_state), relL2T(xl.embeds, want), relL2T(xl.pooled, t2.text_embeds)];
  console.log(`batched prompt encoding rel-L2: SD ${errs[0].toExponential(2)}, SDXL ${errs[1].toExponential(2)}, pooled ${errs[2].toExponential(2)}`);
  errs.forEach((x) => expect(x).toBeLessThanOrEqual(1e-5));
  tf.dispose([e, xl.embeds, xl.pooled, want]);
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose([...Object.values(g), ...Object.values(t1), ...Object.values(t2)]);
});

test('clipSkip: SD takes hidden_states[−(k+1)] through the final layer norm; SDXL takes hidden_states[−(k+2)]', async () => {
  const g = await loadFixture('goldens/clip_tiny_sd15_forward.safetensors');
  const ln = (h: tf.Tensor) => sd.textEncoder.text_model.final_layer_norm.forward(h);
  const cases: [number, tf.Tensor][] = [[1, g.hidden_states_penultimate], [3, g.hidden_states_0_embeddings]]; // 3 layers
  for (const [k, h] of cases) {
    const got = sd.encodePrompt(PROMPTS, { clipSkip: k });
    const want = ln(h);
    const err = relL2T(got, want);
    console.log(`SD clipSkip ${k}: rel-L2 ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-5);
    tf.dispose([got, want]);
  }
  expect(() => sd.encodePrompt('a', { clipSkip: 4 })).toThrow(/clipSkip must be an integer in 0…3 \(the text encoder has 3 layers\), got 4/);
  const zero = sd.encodePrompt(PROMPTS, { clipSkip: 0 });
  expect(relL2T(zero, g.last_hidden_state)).toBeLessThanOrEqual(1e-5);
  zero.dispose();
  // SDXL, clip_skip 1: hidden_states[-3] of both encoders.
  const ids = (tok: typeof sdxl.tokenizer) => tf.tensor2d(tok.call(PROMPTS, { padding: 'max_length', maxLength: 77, truncation: true }).inputIds, [3, 77], 'int32');
  const o1 = sdxl.textEncoder.forward({ inputIds: ids(sdxl.tokenizer) });
  const o2 = sdxl.textEncoder2.forward({ inputIds: ids(sdxl.tokenizer2) });
  const want = tf.concat([o1.hiddenStates[o1.hiddenStates.length - 3], o2.hiddenStates[o2.hiddenStates.length - 3]], -1);
  const got = sdxl.encodePromptXL(PROMPTS, { clipSkip: 1 });
  expect(relL2T(got.embeds, want)).toBe(0);
  expect(relL2T(got.pooled, o2.textEmbeds!)).toBe(0);
  expect(() => sdxl.encodePromptXL('a', { clipSkip: 3 })).toThrow(/clipSkip must be an integer in 0…2/);
  tf.dispose([want, got.embeds, got.pooled, o1.lastHiddenState, ...o1.hiddenStates, o1.pooledOutput!, o2.lastHiddenState, ...o2.hiddenStates, o2.textEmbeds!]);
  Object.values(g).forEach((t) => t.dispose());
});

/** The encoder hidden states the UNet gets at the first step. */
async function firstUnetContext(pipe: StableDiffusionPipeline, opts: Record<string, unknown>): Promise<tf.Tensor> {
  let ctx: tf.Tensor | null = null;
  const forward = pipe.unet.forward.bind(pipe.unet);
  pipe.unet.forward = (o: UNetForwardOptions) => {
    ctx ??= tf.keep(o.encoderHiddenStates.clone());
    return forward(o);
  };
  try {
    (await pipe.generate({ numInferenceSteps: 1, height: 64, width: 64, seed: 1, outputType: 'latent', ...opts })).latents.dispose();
  } finally {
    delete (pipe.unet as Partial<StableDiffusionPipeline['unet']>).forward;
  }
  return ctx!;
}

test('prompt lists: rows [negatives…, positives…], each repeated per image; clipSkip applies to the prompt only (diffusers)', async () => {
  const before = tf.memory().numTensors;
  const ctx = await firstUnetContext(sd, { prompt: ['a photo of a cat', 'the red dog and a cat'], negativePrompt: 'blurry', numImagesPerPrompt: 2, clipSkip: 1 });
  const pos = sd.encodePrompt(['a photo of a cat', 'the red dog and a cat'], { clipSkip: 1 });
  const neg = sd.encodePrompt('blurry');
  const want = tf.tidy(() => tf.concat([neg, neg, neg, neg, ...tf.unstack(pos).flatMap((r) => [r, r]).map((r) => r.expandDims(0))], 0));
  expect(relL2T(ctx, want)).toBe(0);
  tf.dispose([ctx, pos, neg, want]);
  const perPrompt = await firstUnetContext(sd, { prompt: ['a', 'b'], negativePrompt: ['x', 'y'] });
  const w2 = tf.tidy(() => tf.concat([sd.encodePrompt(['x', 'y']), sd.encodePrompt(['a', 'b'])], 0));
  expect(relL2T(perPrompt, w2)).toBe(0);
  tf.dispose([perPrompt, w2]);
  expect(tf.memory().numTensors).toBe(before);
}, 60_000);

test('progress: every denoising step, then every image decoded; onStep unchanged', async () => {
  const progress: GenerationProgress[] = [];
  const steps: number[] = [];
  const before = tf.memory().numTensors;
  const { latents, images, seed } = await sd.generate({
    prompt: 'a red circle', numImagesPerPrompt: 2, numInferenceSteps: 3, height: 64, width: 64, seed: 4,
    onStep: (s) => { steps.push(s.step); }, onProgress: (p) => { progress.push({ ...p }); },
  });
  // sd15_tiny ships PNDM (PLMS): 3 steps are 4 denoiser calls.
  expect(steps).toEqual([0, 1, 2, 3]);
  expect(progress).toEqual([
    ...[1, 2, 3, 4].map((completed) => ({ phase: 'denoise', completed, total: 4 })),
    ...[0, 1, 2].map((completed) => ({ phase: 'decode', completed, total: 2 })),
  ]);
  expect(images.map((i) => [i.width, i.height])).toEqual([[64, 64], [64, 64]]);
  expect(latents.shape).toEqual([2, 4, 8, 8]);
  expect(seed).toBe(4);
  latents.dispose();
  expect(tf.memory().numTensors).toBe(before);
}, 60_000);

test('SDXL size options diffusers would ignore are rejected, naming them', async () => {
  const e = tf.zeros([1, 77, 64]);
  const p = tf.zeros([1, 32]);
  const image = tf.fill([1, 3, 64, 64], 0.5);
  const p2 = tf.zeros([2, 32]);
  const base = { promptEmbeds: e, pooledPromptEmbeds: p, numInferenceSteps: 2, height: 64, width: 64 };
  const before = tf.memory().numTensors;
  await expect(sdxl.generate({ ...base, negativeOriginalSize: [80, 112] })).rejects.toThrow(/only with both negativeOriginalSize and negativeTargetSize/);
  await expect(sdxl.generate({ ...base, height: undefined, width: undefined, image, negativeCropsCoordsTopLeft: [4, 8] })).rejects.toThrow(/negativeCropsCoordsTopLeft has no effect in SDXL img2img/);
  await expect(sdxl.generate({ ...base, originalSize: [64] as unknown as [number, number] })).rejects.toThrow(/originalSize must be a pair of numbers/);
  await expect(sdxl.generate({ ...base, negativePooledPromptEmbeds: p2 })).rejects.toThrow(/negativePooledPromptEmbeds has batch 2 but there are 1 prompts/);
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose([e, p, p2, image]);
}, 60_000);
