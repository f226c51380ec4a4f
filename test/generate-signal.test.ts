/**
 * generate({ signal }) on every pipeline and mode (issue 18): an abort stops the run at the next progress point
 * (between steps, before the VAE decode, between decoded images) with an AbortError, frees every tensor,
 * restores the attention processors TGATE installed, and leaves the pipeline giving exactly what it gives
 * alone. A signal aborted before the call does no work; an error thrown from onStep stops the run the same way.
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, useBackend } from './support/helpers.js';
import { assemblePipeline, pipelineCache } from './support/replay.js';
import { loadPipeline, type Pipeline } from '../src/pipelines/load.js';
import type { GenerateOptionsBase } from '../src/pipelines/session.js';
import type { GenerationProgress } from '../src/pipelines/denoise.js';
import type { RGBImage } from '../src/io/png.js';

const inpaintDir = assemblePipeline(fixture('pipelines/sd15_tiny'), {
  index: { _class_name: 'StableDiffusionInpaintPipeline' }, replace: { unet: fixture('ext2/models/sd15_tiny_inpaint_unet') },
});
const sigmaDir = assemblePipeline(fixture('pipelines/pixart_tiny'), {
  index: { _class_name: 'PixArtSigmaPipeline' },
  replace: { transformer: fixture('ext2/models/pixart_sigma_tiny/transformer'), scheduler: fixture('ext2/models/pixart_sigma_tiny/scheduler') },
});
const DIRS: Record<string, string> = {
  sd: fixture('pipelines/sd15_tiny'), inpaint: inpaintDir, sdxl: fixture('pipelines/sdxl_tiny'), pixart: fixture('pipelines/pixart_tiny'), sigma: sigmaDir,
};
const pipes = pipelineCache((key) => loadPipeline(DIRS[key]));
beforeAll(() => useBackend('cpu'));
afterAll(async () => {
  await pipes.release();
  fs.rmSync(inpaintDir, { recursive: true, force: true });
  fs.rmSync(sigmaDir, { recursive: true, force: true });
});

/** A 32×32 picture: a gradient, and a mask of its right half. */
const picture = (f: (x: number, y: number, c: number) => number): RGBImage => {
  const data = new Uint8Array(32 * 32 * 3);
  for (let i = 0; i < data.length; i++) data[i] = f(Math.floor(i / 3) % 32, Math.floor(i / 96), i % 3);
  return { width: 32, height: 32, data };
};
const IMAGE = picture((x, y, c) => (x * 8 + y * 3 + c * 60) % 256);
const MASK = picture((x) => (x >= 16 ? 255 : 0));

const BASE = { prompt: 'a red circle', numInferenceSteps: 5, seed: 3, height: 32, width: 32, tgate: { gateStep: 3 } };
const MODES: [string, string, Record<string, unknown>][] = [
  ['SD text-to-image, auto gate', 'sd', { tgate: { gateStep: 'auto' } }],
  ['SD img2img', 'sd', { image: IMAGE, strength: 0.8, tgate: { gateStep: 2 } }],
  ['SD inpainting (9-channel UNet)', 'inpaint', { image: IMAGE, maskImage: MASK, tgate: { gateStep: 2 } }],
  ['SDXL text-to-image', 'sdxl', {}],
  ['PixArt-α text-to-image', 'pixart', {}],
  ['PixArt-Σ text-to-image', 'sigma', {}],
];

/** A generation's latents and image bytes, and the progress it reported. */
async function run(pipe: Pipeline, o: Record<string, unknown>): Promise<{ latents: Float32Array; images: Uint8Array[] }> {
  const r = await pipe.generate({ ...BASE, ...o } as GenerateOptionsBase);
  const latents = (await r.latents.data()) as Float32Array;
  r.latents.dispose();
  return { latents, images: r.images.map((i) => i.data) };
}

const denoiser = (pipe: Pipeline) => ('unet' in pipe ? pipe.unet : pipe.transformer);
const processors = (pipe: Pipeline) => [...denoiser(pipe).attnProcessors().values()];

/** Runs `o` expecting it to stop: the error, what was reported, and that nothing was left behind. */
async function expectStopped(pipe: Pipeline, o: Record<string, unknown>, error: RegExp, name = 'AbortError'): Promise<{ steps: number[]; progress: string[] }> {
  const before = tf.memory().numTensors;
  const procs = processors(pipe);
  const steps: number[] = [];
  const progress: string[] = [];
  const user = o.onProgress as ((p: GenerationProgress) => void) | undefined;
  const userStep = o.onStep as ((s: { step: number }) => void) | undefined;
  const call = run(pipe, {
    ...o,
    onStep: (s: { step: number }) => { steps.push(s.step); userStep?.(s); },
    onProgress: (p: GenerationProgress) => { progress.push(`${p.phase} ${p.completed}/${p.total}`); user?.(p); },
  });
  await expect(call).rejects.toThrow(error);
  await expect(call).rejects.toHaveProperty('name', name);
  expect(tf.memory().numTensors).toBe(before);
  processors(pipe).forEach((p, i) => expect(p).toBe(procs[i]));
  return { steps, progress };
}

describe.each(MODES)('%s', (_title, key, mode) => {
  let alone: Awaited<ReturnType<typeof run>>;
  beforeAll(async () => { alone = await run(await pipes.get(key), mode); }, 60_000);

  /** The pipeline still gives exactly its result alone. */
  async function expectUsable(): Promise<void> {
    const again = await run(await pipes.get(key), mode);
    expect(Buffer.from(again.latents.buffer).equals(Buffer.from(alone.latents.buffer))).toBe(true);
    expect(again.images).toEqual(alone.images);
  }

  test('an abort during step 1 stops before step 2 with an AbortError; nothing is left behind', async () => {
    const c = new AbortController();
    const { steps, progress } = await expectStopped(await pipes.get(key), {
      ...mode, signal: c.signal, onStep: ({ step }: { step: number }) => { if (step === 1) c.abort(); },
    }, /^generate \(2 of \d+ steps\): aborted$/);
    expect(steps).toEqual([0, 1]);
    expect(progress).toEqual([expect.stringMatching(/^denoise 1\//)]);
    await expectUsable();
  }, 60_000);

  test('a signal aborted before the call does no work', async () => {
    const c = new AbortController();
    c.abort(new Error('not needed'));
    const { steps, progress } = await expectStopped(await pipes.get(key), { ...mode, signal: c.signal }, /^generate: aborted$/);
    expect([steps, progress]).toEqual([[], []]);
  });

  test('an abort after the last step stops before the VAE decode', async () => {
    const c = new AbortController();
    const { progress } = await expectStopped(await pipes.get(key), {
      ...mode, signal: c.signal, onProgress: (p: GenerationProgress) => { if (p.phase === 'denoise' && p.completed === p.total) c.abort(); },
    }, /^generate \(\d+ of \d+ steps\): aborted$/);
    expect(progress.some((p) => p.startsWith('decode'))).toBe(false);
    await expectUsable();
  }, 60_000);

  test('an error thrown from onStep stops the run the same way', async () => {
    await expectStopped(await pipes.get(key), { ...mode, onStep: ({ step }: { step: number }) => { if (step === 2) throw new Error('enough'); } }, /^enough$/, 'Error');
    await expectUsable();
  }, 60_000);
});

test('an abort between decoded images stops before the next one', async () => {
  const pipe = await pipes.get('sd');
  const c = new AbortController();
  const { progress } = await expectStopped(pipe, {
    numImagesPerPrompt: 2, signal: c.signal, onProgress: (p: GenerationProgress) => { if (p.phase === 'decode' && p.completed === 1) c.abort(); },
  }, /^generate \(1 of 2 images decoded\): aborted$/);
  expect(progress.slice(-2)).toEqual(['decode 0/2', 'decode 1/2']);
}, 60_000);

test('a signal that is not an AbortSignal is refused before any work', async () => {
  const pipe = await pipes.get('sd');
  await expect(pipe.generate({ ...BASE, signal: true } as unknown as GenerateOptionsBase)).rejects.toThrow(/signal must be an AbortSignal .*got boolean/);
});
