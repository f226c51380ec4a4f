/**
 * DeepCache with TGATE on a scheduler with warm-up calls (sd15_tiny's shipped PNDM: PLMS runs 11 calls for 10
 * steps, its second timestep twice). T-GATE's SD_DeepCache restarts DeepCache at TGATE's steps gate − 1 and gate,
 * counted after the warm-up, and DeepCacheSDHelper counts steps by the index of the timestep in the scheduler's
 * list (its first occurrence). Counting restarts by loop index instead ran a cached step at batch 1 from a
 * batch-2 cache ("DeepCache: cached batch 2 but this step runs batch 1").
 */
import { jest } from '@jest/globals';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { DeepCache } from '../src/pipelines/deepcache.js';
import type { StableDiffusionPipeline, SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  await useBackend('wasm');
  pipe = await loadPipeline(fixture('pipelines/sd15_tiny')) as StableDiffusionPipeline;
});
afterAll(() => pipe.dispose());

const GATE7 = { gateStep: 7, spInterval: 5, fiInterval: 1, warmUp: 2 };

async function run(extra: Partial<SDGenerateOptions>): Promise<{ latents: tf.Tensor; batches: number[] }> {
  const batches: number[] = [];
  const { latents } = await pipe.generate({
    prompt: 'a red circle', numInferenceSteps: 10, guidanceScale: 7.5, height: 64, width: 64, seed: 3, outputType: 'latent',
    onStep: (s) => { batches.push(s.batch); }, ...extra,
  });
  return { latents, batches };
}

test('PNDM + DeepCache + TGATE gate 7 runs, restarting DeepCache at TGATE\'s steps 6 and 7 (loop calls 7 and 8)', async () => {
  expect(pipe.scheduler.constructor.name).toBe('PNDMScheduler');
  const spy = jest.spyOn(DeepCache.prototype, 'beforeStep');
  const before = tf.memory().numTensors;
  try {
    const { latents, batches } = await run({ deepcache: { cacheInterval: 3 }, tgate: GATE7 });
    // 11 calls: the warm-up call, then TGATE's steps 0…9; guidance until TGATE's step 7 (loop call 8).
    expect(batches).toEqual([2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1]);
    const dc = spy.mock.contexts[0] as DeepCache;
    // Timestep indices 0, 1, 1, 3, 4, …: full at index 0, 3, 6, restarts at loop calls 7 and 8, then every 3rd.
    const index = [0, 1, 1, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(spy.mock.calls.map(([, at]) => at)).toEqual(index.map((k, i) => ({ index: k, tgateStep: i - 1 })));
    expect(dc.fullSteps).toEqual([0, 3, 6, 7, 8]);
    latents.dispose();
  } finally {
    spy.mockRestore();
  }
  expect(tf.memory().numTensors).toBe(before);
}, 120_000);

test('PNDM + DeepCache every step + TGATE equals TGATE alone exactly', async () => {
  const plain = await run({ tgate: GATE7 });
  const cached = await run({ tgate: GATE7, deepcache: { cacheInterval: 1 } });
  expect(cached.batches).toEqual(plain.batches);
  expect(Buffer.compare(Buffer.from(cached.latents.dataSync().buffer), Buffer.from(plain.latents.dataSync().buffer))).toBe(0);
  tf.dispose([plain.latents, cached.latents]);
}, 120_000);

test('DeepCacheSDHelper\'s count: a repeated timestep keeps its first index', () => {
  const dc = new DeepCache(pipe.unet, { cacheInterval: 2 });
  // PLMS-like: indices 0, 1, 1, 3, 4 → full where (index − 0) is even: calls 0, 4.
  [0, 1, 1, 3, 4].forEach((index, i) => dc.beforeStep(i, { index, tgateStep: i - 1 }));
  expect(dc.fullSteps).toEqual([0, 4]);
  dc.dispose();
});
