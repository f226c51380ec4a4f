/**
 * Inpainting against diffusers v0.30.3 StableDiffusionInpaintPipeline runs (test/fixtures/ext2/inpaint): a
 * 9-channel inpainting UNet (latents + mask + masked-image latents) loaded from a folder whose model_index.json
 * names StableDiffusionInpaintPipeline, and the latent blend of an ordinary 4-channel UNet; the one generator's
 * draws in diffusers' order; TGATE counting the steps that run.
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';
import { assemblePipeline, describeReplays, ext2Json, pipelineCache, recordingGenerator, type ReplayCase, type Tensors } from './support/replay.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { preprocessImage, preprocessMask, resizeNearest } from '../src/pipelines/images.js';
import { strengthSteps } from '../src/pipelines/start.js';
import { inpaintStart } from '../src/pipelines/inpaint.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { StableDiffusionXLPipeline } from '../src/pipelines/stable-diffusion-xl.js';
import type { RGBImage } from '../src/io/png.js';

type Run = { unet: 'unet4' | 'unet9'; strength: number; generator_seed: number; scheduler: { class: string; config_passed: Record<string, unknown> } };
const index = ext2Json<Record<string, Run>>('ext2/inpaint/index.json');
const RUNS = Object.entries(index).filter(([k]) => k.startsWith('sd15_'));

// The inpainting pipeline folder: sd15_tiny with the 9-channel UNet and StableDiffusionInpaintPipeline as its class.
const inpaintDir = assemblePipeline(fixture('pipelines/sd15_tiny'), {
  index: { _class_name: 'StableDiffusionInpaintPipeline' }, replace: { unet: fixture('ext2/models/sd15_tiny_inpaint_unet') },
});
const pipes = pipelineCache((unet) => loadPipeline(unet === 'unet9' ? inpaintDir : fixture('pipelines/sd15_tiny')) as Promise<StableDiffusionPipeline>);
const pipeline = (unet: 'unet4' | 'unet9') => pipes.get(unet);
afterAll(async () => {
  await pipes.release();
  fs.rmSync(inpaintDir, { recursive: true, force: true });
});

interface Case extends ReplayCase { unet: 'unet4' | 'unet9' }
const options = (r: Run) => (g: Tensors) => ({
  promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], image: g['in.image'], maskImage: g['in.mask_image'],
  height: 96, width: 96, strength: r.strength, numInferenceSteps: 10, guidanceScale: 7.5,
});
const CASES: Case[] = RUNS.map(([name, r]) => ({
  file: `ext2/inpaint/${name}`, unet: r.unet, seed: r.generator_seed, scheduler: { cls: r.scheduler.class, config: r.scheduler.config_passed },
  batches: new Array<number>(strengthSteps(10, r.strength).run).fill(2), options: options(r),
}));

describeReplays('inpainting reproduces diffusers', CASES, ['ext2/inpaint/sd15_tiny_unet9_ddim_s075', 'ext2/inpaint/sd15_tiny_unet4_euler_s100'], pipes, (c) => c.unet);

describe('inpainting pieces', () => {
  beforeAll(() => useBackend('wasm'));

  test('the start: binarized mask, nearest-shrunk mask, masked-image latents, initial latents, draws in order', async () => {
    for (const c of CASES) {
      const g = await loadFixture(`${c.file}.safetensors`);
      const pipe = await pipeline(c.unet);
      expect(pipe.unet.config.inChannels).toBe(c.unet === 'unet9' ? 9 : 4);
      const sched = schedulerFromConfig(c.scheduler!.config, c.scheduler!.cls);
      sched.setTimesteps(10);
      const image = await preprocessImage(g['in.image']);
      const mask = await preprocessMask(g['in.mask_image']);
      expect(relL2T(mask, g.mask_condition)).toBe(0);
      const rec = recordingGenerator(c.seed!);
      const r = index[c.file.split('/').pop()!];
      const before = tf.memory().numTensors;
      const start = inpaintStart({
        vae: pipe.vae, scheduler: sched, image, mask, shape: [1, 4, 12, 12], begin: strengthSteps(10, r.strength).begin,
        strengthMax: r.strength === 1, maskedInput: c.unet === 'unet9', generator: rec.generator,
      });
      const figures = [relL2T(start.latents, g['prepare_latents.latents'])];
      rec.draws.forEach((d, k) => expect(relL2T(d, g[`rng_draw.${k}`])).toBeLessThanOrEqual(1e-6));
      expect(rec.draws.length).toBe(Object.keys(g).filter((k) => k.startsWith('rng_draw.')).length);
      const small = resizeNearest(mask, 12, 12);
      const first = (t: tf.Tensor) => tf.tidy(() => tf.slice(t, 0, 1));
      const [refMask, refMasked] = [first(g.mask_latent_cfg), first(g.masked_image_latents_cfg)];
      expect(relL2T(small, refMask)).toBe(0);
      if (start.extraChannels) {
        const [m, masked] = tf.split(start.extraChannels, [1, 4], 1);
        expect(relL2T(m, small)).toBe(0);
        figures.push(relL2T(masked, refMasked));
        tf.dispose([m, masked]);
      }
      console.log(`${c.file}: start latents rel-L2 ${figures[0].toExponential(2)}${figures[1] !== undefined ? `, masked-image latents ${figures[1].toExponential(2)}` : ''}`);
      expect(figures[0]).toBeLessThanOrEqual(1e-5);
      // The tiny VAE's encoder on the half-black masked image: its mean is ~3e-5 off diffusers' (the encoder's own
      // float32 error on that input, not the pipeline's), hence the run-level bound here.
      if (figures[1] !== undefined) expect(figures[1]).toBeLessThanOrEqual(1e-4);
      tf.dispose([start.latents, small, refMask, refMasked, ...rec.draws]);
      start.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([image, mask, ...Object.values(g)]);
      sched.dispose();
    }
  }, 120_000);

  test('an RGB mask is converted as PIL’s convert("L") then binarized at 0.5', async () => {
    // PIL: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16; L/255 ≥ 0.5 ⇔ L ≥ 128.
    const px = [[127, 127, 127], [128, 128, 128], [255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 100, 50], [100, 200, 50], [255, 255, 255], [0, 0, 0]];
    const want = px.map(([r, g, b]) => (((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) >= 128 ? 1 : 0));
    expect(want).toEqual([0, 1, 0, 1, 0, 0, 1, 1, 0]);
    const img: RGBImage = { width: px.length, height: 1, data: Uint8Array.from(px.flat()) };
    const m = await preprocessMask(img);
    expect(Array.from(m.dataSync())).toEqual(want);
    expect(m.shape).toEqual([1, 1, 1, px.length]);
    m.dispose();
  });
});

describe('inpainting with TGATE and DeepCache: the gate counts the steps that run', () => {
  beforeAll(() => useBackend('wasm'));
  const run = async (c: Case, extra: Record<string, unknown>, batches?: number[]) => {
    const pipe = await pipeline(c.unet);
    const shipped = pipe.scheduler;
    pipe.scheduler = schedulerFromConfig(c.scheduler!.config, c.scheduler!.cls);
    const g = await loadFixture(`${c.file}.safetensors`);
    try {
      return (await pipe.generate({ ...c.options(g), seed: c.seed, outputType: 'latent', ...extra, onStep: (s) => { batches?.push(s.batch); } })).latents;
    } finally {
      pipe.scheduler.dispose();
      pipe.scheduler = shipped;
      Object.values(g).forEach((t) => t.dispose());
    }
  };
  test.each(['ext2/inpaint/sd15_tiny_unet9_ddim_s075', 'ext2/inpaint/sd15_tiny_unet4_ddim_s075'])('%s (7 of 10 steps run)', async (file) => {
    const c = CASES.find((x) => x.file === file)!;
    const before = tf.memory().numTensors;
    const base = await run(c, {});
    const lastGate = await run(c, { tgate: { gateStep: 7, spInterval: 1, warmUp: 0 } });
    const everyStep = await run(c, { deepcache: { cacheInterval: 1 } });
    expect(relL2T(lastGate, base)).toBe(0);
    expect(relL2T(everyStep, base)).toBe(0);
    const batches: number[] = [];
    const gated = await run(c, { tgate: { gateStep: 4 }, deepcache: { cacheInterval: 2 } }, batches);
    expect(batches).toEqual([2, 2, 2, 2, 1, 1, 1]);
    tf.dispose([base, lastGate, everyStep, gated]);
    expect(tf.memory().numTensors).toBe(before);
    await expect(run(c, { tgate: { gateStep: 8 } })).rejects.toThrow(/tgate.gateStep 8 is beyond the 7 steps that run/);
  }, 120_000);
});

describe('inpainting errors', () => {
  beforeAll(() => useBackend('wasm'));
  const e = tf.zeros([1, 77, 32]);
  const image = tf.fill([1, 3, 64, 64], 0.5);
  const mask = tf.ones([1, 1, 64, 64]);
  const [wide, rgb, bytes, lat] = [tf.ones([1, 1, 32, 64]), tf.ones([1, 3, 64, 64]), tf.fill([1, 1, 64, 64], 255), tf.zeros([1, 4, 8, 8])];
  afterAll(() => tf.dispose([e, image, mask, wide, rgb, bytes, lat]));
  test.each([
    ['a 9-channel UNet without a mask', { image }, /this UNet takes 9 input channels \(an inpainting UNet.*pass image and maskImage/],
    ['a mask without an image', { maskImage: mask }, /maskImage needs image/],
    ['a mask of another size', { image, maskImage: wide }, /maskImage is 64×32 but image is 64×64/],
    ['a mask with three channels', { image, maskImage: rgb }, /maskImage must be an NCHW float32 tensor \[B, 1, H, W\]/],
    ['a mask out of [0, 1]', { image, maskImage: bytes }, /maskImage values must be in \[0, 1\], got min 255, max 255/],
    ['latents with an image', { image, maskImage: mask, latents: lat }, /latents cannot be combined with image/],
  ])('%s', async (_n, bad, msg) => {
    const pipe = await pipeline('unet9');
    const before = tf.memory().numTensors;
    await expect(pipe.generate({ promptEmbeds: e, negativePromptEmbeds: e, numInferenceSteps: 2, ...bad })).rejects.toThrow(msg);
    expect(tf.memory().numTensors).toBe(before);
  }, 60_000);

  test('SDXL rejects maskImage', async () => {
    const sdxl = (await loadPipeline(fixture('pipelines/sdxl_tiny'))) as StableDiffusionXLPipeline;
    await expect(sdxl.generate({ prompt: 'a', image, maskImage: mask } as never)).rejects.toThrow(/maskImage \(inpainting\) is supported by StableDiffusionPipeline only/);
    sdxl.dispose();
  }, 60_000);
});
