/**
 * img2img: SD (set_begin_index) and SDXL (no begin index) against diffusers v0.30.3 runs (test/fixtures/ext2/img2img),
 * the one generator's draws in diffusers' order; PixArt img2img (no diffusers pipeline) against its definition
 * written out; TGATE and DeepCache counting the steps that run, and the MAC count of such a run.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';
import { describeReplays, ext2Json, pipelineCache, recordingGenerator, type ReplayCase, type Tensors } from './support/replay.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig, TorchGenerator } from '../src/samplers/index.js';
import { preprocessImage } from '../src/pipelines/images.js';
import { imageToImageStart, strengthSteps } from '../src/pipelines/start.js';
import { resolveTgate, tgateFlags, type TgateFlags } from '../src/attention/tgate.js';
import { forwardMacs, generationMacs, runMacs } from '../bench/macs.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { PixArtAlphaPipeline } from '../src/pipelines/pixart-alpha.js';
import type { RGBImage } from '../src/io/png.js';

type Run = { strength: number; generator_seed: number; scheduler?: { class: string; config_passed: Record<string, unknown> } };
const index = ext2Json<Record<string, Run>>('ext2/img2img/index.json');

const pipes = pipelineCache((name) => loadPipeline(fixture('pipelines', name)));
const pipeline = (name: string) => pipes.get(name);
afterAll(() => pipes.release());

interface Case extends ReplayCase { pipe: string }
const CASES: Case[] = Object.entries(index).filter(([k]) => k !== 'files').map(([name, r]): Case => {
  const run = strengthSteps(10, r.strength).run;
  const sdxl = name.startsWith('sdxl');
  return {
    file: `ext2/img2img/${name}`, pipe: sdxl ? 'sdxl_tiny' : 'sd15_tiny', seed: r.generator_seed, batches: new Array<number>(run).fill(2),
    scheduler: r.scheduler && { cls: r.scheduler.class, config: r.scheduler.config_passed },
    options: (g: Tensors) => ({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
      pooledPromptEmbeds: g['in.pooled_prompt_embeds'], negativePooledPromptEmbeds: g['in.negative_pooled_prompt_embeds'],
      image: g['in.image'], strength: r.strength, numInferenceSteps: 10, guidanceScale: sdxl ? 5 : 7.5,
    }),
  };
});

describeReplays('img2img reproduces diffusers', CASES, ['ext2/img2img/sd15_tiny_euler_s060', 'ext2/img2img/sdxl_tiny_euler_s070'], pipes, (c) => c.pipe);

describe('img2img pieces', () => {
  beforeAll(() => useBackend('wasm'));

  test('the start: image → 2x−1, latent sample (draw 1), noise (draw 2), add_noise at the first timestep that runs', async () => {
    for (const c of CASES) {
      const g = await loadFixture(`${c.file}.safetensors`);
      const pipe = (await pipeline(c.pipe)) as StableDiffusionPipeline;
      const sched = c.scheduler ? schedulerFromConfig(c.scheduler.config, c.scheduler.cls) : schedulerFromConfig(pipe.scheduler.config);
      sched.setTimesteps(10);
      const x = await preprocessImage(g['in.image']);
      expect(relL2T(x, g.encode_input)).toBe(0);
      const rec = recordingGenerator(c.seed!);
      const before = tf.memory().numTensors;
      const { begin } = strengthSteps(10, index[c.file.split('/').pop()!].strength);
      const start = imageToImageStart({ vae: pipe.vae, scheduler: sched, image: x, shape: [1, 4, 12, 12], begin, setBeginIndex: !c.file.includes('sdxl'), generator: rec.generator });
      const err = relL2T(start.latents, g.init_latents_noised);
      console.log(`${c.file}: start latents rel-L2 ${err.toExponential(2)}`);
      expect(err).toBeLessThanOrEqual(1e-5);
      expect(relL2T(rec.draws[1], g['add_noise.noise'])).toBeLessThanOrEqual(1e-6); // SLEEF last bits
      start.latents.dispose();
      start.dispose();
      tf.dispose(rec.draws);
      expect(tf.memory().numTensors).toBe(before);
      sched.dispose();
      x.dispose();
      Object.values(g).forEach((t) => t.dispose());
    }
  }, 120_000);

  test('an RGB image is read as bytes/255 (numpy’s float32 division), then 2x−1', async () => {
    const g = await loadFixture('ext2/img2img/sd15_tiny_ddim_s060.safetensors');
    const bytes = tf.tidy(() => tf.round(tf.mul(g['in.image'], 255)));
    const [, , h, w] = g['in.image'].shape;
    const rgb: RGBImage = { width: w, height: h, data: Uint8Array.from(tf.tidy(() => bytes.squeeze([0]).transpose([1, 2, 0])).dataSync()) };
    const fromRgb = await preprocessImage(rgb);
    const fromTensor = await preprocessImage(tf.tidy(() => tf.div(bytes, 255)));
    expect(relL2T(fromRgb, fromTensor)).toBe(0);
    tf.dispose([bytes, fromRgb, fromTensor, ...Object.values(g)]);
  });
});

describe('TGATE and DeepCache count the steps that run', () => {
  beforeAll(() => useBackend('wasm'));
  const sdCase = CASES.find((c) => c.file.endsWith('sd15_tiny_ddim_s060'))!; // 6 of 10 steps run
  async function run(extra: Record<string, unknown>, record?: (s: { batch: number; tgate?: TgateFlags }) => void): Promise<tf.Tensor> {
    const pipe = (await pipeline('sd15_tiny')) as StableDiffusionPipeline;
    const shipped = pipe.scheduler;
    pipe.scheduler = schedulerFromConfig(sdCase.scheduler!.config, sdCase.scheduler!.cls);
    const g = await loadFixture(`${sdCase.file}.safetensors`);
    try {
      const { latents } = await pipe.generate({
        ...(sdCase.options(g) as object), seed: sdCase.seed, outputType: 'latent', ...extra,
        onStep: (s) => record?.({ batch: s.batch, tgate: s.tgate }),
      });
      return latents;
    } finally {
      pipe.scheduler.dispose();
      pipe.scheduler = shipped;
      Object.values(g).forEach((t) => t.dispose());
    }
  }

  test('a gate at the last step that runs (no self-attention reuse) and DeepCache every step equal the baseline exactly', async () => {
    const before = tf.memory().numTensors;
    const base = await run({});
    const gated = await run({ tgate: { gateStep: 6, spInterval: 1, warmUp: 0 } });
    const cached = await run({ deepcache: { cacheInterval: 1 } });
    expect(relL2T(gated, base)).toBe(0);
    expect(relL2T(cached, base)).toBe(0);
    tf.dispose([base, gated, cached]);
    expect(tf.memory().numTensors).toBe(before);
    await expect(run({ tgate: { gateStep: 7 } })).rejects.toThrow(/tgate.gateStep 7 is beyond the 6 steps that run \(strength 0.6 of 10 steps/);
  }, 120_000);

  test('the flags, batches and MACs of a gated run are those of a 6-step generation', async () => {
    const tgate = { gateStep: 4, spInterval: 2, warmUp: 1 };
    const steps: { batch: number; tgate?: TgateFlags }[] = [];
    (await run({ tgate }, (s) => steps.push(s))).dispose();
    const r = resolveTgate(tgate, 6);
    expect(steps).toEqual(Array.from({ length: 6 }, (_, i) => ({ batch: i < 4 ? 2 : 1, tgate: tgateFlags(i, r) })));
    const f = forwardMacs(ext2Json('pipelines/sd15_tiny/unet/config.json'), { height: 96, width: 96, latentScale: 8 });
    const macs = runMacs(f, steps);
    console.log(`img2img strength 0.6 × 10 steps with TGATE: ${macs} MACs (generationMacs over 6 steps: ${generationMacs(f, 6, tgate)})`);
    expect(macs).toBe(generationMacs(f, 6, tgate));
    expect(macs).toBeLessThan(generationMacs(f, 6, null));
  }, 120_000);
});

describe('PixArt img2img (SD’s definition, no diffusers pipeline)', () => {
  beforeAll(() => useBackend('wasm'));

  test('equals SD’s img2img written out by hand, bit for bit', async () => {
    const pipe = (await pipeline('pixart_tiny')) as PixArtAlphaPipeline;
    const image = tf.tidy(() => tf.sigmoid(tf.randomNormal([1, 3, 64, 64], 0, 1, 'float32', 11)));
    const embeds = tf.tidy(() => tf.randomNormal([2, 12, 32], 0, 1, 'float32', 12));
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]);
    const [pe, ne] = tf.split(embeds, 2, 0);
    const [pm, nm] = tf.split(mask, 2, 0);
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const { latents } = await pipe.generate({
      image, strength: 0.5, numInferenceSteps: 8, guidanceScale: 4.5, seed: 21, outputType: 'latent',
      promptEmbeds: pe, negativePromptEmbeds: ne, promptAttentionMask: pm, negativePromptAttentionMask: nm,
      onStep: (s) => { steps.push(s.timestep); },
    });
    // By hand: setTimesteps, setBeginIndex(4), encode (draw 1), noise (draw 2), add_noise, 4 guided steps.
    const s = pipe.scheduler;
    s.setTimesteps(8);
    s.setBeginIndex?.(4);
    const gen = new TorchGenerator(21);
    const x = await preprocessImage(image);
    const dist = pipe.vae.encode(x);
    const z = tf.tidy(() => tf.mul(dist.sample(gen.randn([1, 4, 8, 8])), pipe.vae.config.scalingFactor));
    let lat = tf.tidy(() => s.addNoise(z, gen.randn([1, 4, 8, 8]), s.timesteps[4]));
    const cfgE = tf.concat([ne, pe], 0);
    const cfgM = tf.concat([nm, pm], 0);
    const res = tf.tensor2d([[64, 64], [64, 64]]);
    const ar = tf.tensor2d([[1], [1]]);
    for (const t of s.timesteps.slice(4)) {
      const eps = tf.tidy(() => {
        const out = pipe.transformer.forward({
          hiddenStates: s.scaleModelInput(tf.concat([lat, lat], 0), t), timestep: t, encoderHiddenStates: cfgE, encoderAttentionMask: cfgM, resolution: res, aspectRatio: ar,
        }).slice([0, 0, 0, 0], [-1, 4, -1, -1]);
        const [u, c] = tf.split(out, 2, 0);
        return tf.add(u, tf.mul(tf.sub(c, u), 4.5));
      });
      const next = s.step(eps, t, lat).prevSample;
      tf.dispose([eps, lat]);
      lat = next;
    }
    s.reset();
    expect(steps).toEqual(s.timesteps.slice(4));
    const err = relL2T(latents, lat);
    console.log(`PixArt img2img vs by hand: rel-L2 ${err}`);
    expect(err).toBe(0);
    tf.dispose([latents, x, z, lat, cfgE, cfgM, res, ar]);
    dist.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([image, embeds, mask, pe, ne, pm, nm]);
  }, 120_000);

  test('strength sets the steps that run: ⌊N·strength⌋ from index N − ⌊N·strength⌋; strength 1 runs all from add_noise(image, t₀)', async () => {
    expect(strengthSteps(10, 1)).toEqual({ begin: 0, run: 10 });
    expect(strengthSteps(10, 0.85)).toEqual({ begin: 2, run: 8 });
    expect(strengthSteps(10, 0.6)).toEqual({ begin: 4, run: 6 });
    expect(() => strengthSteps(10, 0.05)).toThrow(/strength 0.05 × 10 steps leaves no step to run/);
    expect(() => strengthSteps(10, 1.5)).toThrow(/strength must be a number in \[0, 1\], got 1.5/);
    const pipe = (await pipeline('pixart_tiny')) as PixArtAlphaPipeline;
    const image = tf.fill([1, 3, 64, 64], 0.5);
    const e = tf.zeros([1, 12, 32]);
    const seen: number[] = [];
    (await pipe.generate({ image, strength: 1, numInferenceSteps: 3, promptEmbeds: e, negativePromptEmbeds: e, seed: 3, outputType: 'latent', onStep: (s) => { seen.push(s.step); } })).latents.dispose();
    expect(seen).toEqual([0, 1, 2]);
    tf.dispose([image, e]);
  }, 60_000);
});
