/**
 * Binding-limit safety (src/backends/limits.ts): a score matrix larger than the (lowered) buffer limit is split by
 * query rows and gives the unsplit result; a row that cannot fit is an error naming the limit. On WebGPU the
 * default path is the fused attention kernel, which needs no split. Runs on WebGPU through Dawn when it has an
 * adapter (where the device's own limit is read), and always on wasm.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { useBackend } from './support/helpers.js';
import { splitCheck, type SplitReport } from './limits-check.js';
import { runWebgpuChild } from './webgpu-run.js';
import { checkGenerationFits, setBufferLimit } from '../src/backends/index.js';

const ASSET = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'assets', 'tiny-shapes');
const BOUND = 1e-6;
/** The fused kernel against the plain ops: another order of summation, through 2 steps and the VAE. */
const FUSED_BOUND = 1e-5;

/** `fused`: the backend has a fused attention kernel, which the default path runs without any split. */
function expectSplit(r: SplitReport, fused: boolean): void {
  expect(r.sdpa.scoreBytes).toBeGreaterThan(r.sdpa.limit);
  expect(r.sdpa.splits).toBe(1);
  expect(r.sdpa.relL2).toBeLessThanOrEqual(BOUND);
  expect(r.sdpa.defaultSplits).toBe(fused ? 0 : 1);
  expect(r.sdpa.defaultRelL2).toBeLessThanOrEqual(fused ? FUSED_BOUND : BOUND);
  expect(r.rowError).toMatch(/8192 bytes per query row .* over the 1024-byte buffer limit/);
  if (r.pipeline) {
    expect(r.pipeline.splits).toBeGreaterThan(0);
    expect(r.pipeline.relL2).toBeLessThanOrEqual(BOUND);
    if (fused) expect(r.pipeline.defaultSplits).toBe(0);
    else expect(r.pipeline.defaultSplits).toBe(r.pipeline.splits);
    expect(r.pipeline.defaultRelL2).toBeLessThanOrEqual(fused ? FUSED_BOUND : BOUND);
  }
}

test('wasm: a score matrix over the lowered limit is split and matches the unsplit result', async () => {
  await useBackend('wasm');
  const r = await splitCheck(ASSET);
  console.log(`[wasm] split: ${JSON.stringify({ sdpa: r.sdpa, pipeline: r.pipeline })}`);
  expect(r.deviceLimit).toBeNull();
  expectSplit(r, false);
  await useBackend('cpu');
}, 120000);

test('webgpu (Dawn): the device limit is read, and the split matches (skipped only without an adapter)', async () => {
  const r = await runWebgpuChild<{ split: SplitReport }>({ split: true, splitAsset: ASSET });
  if (r.skip !== undefined) {
    console.warn(`limits.test: webgpu SKIPPED — ${r.skip}`);
    return;
  }
  console.log(`[webgpu] ${r.details}; split: ${JSON.stringify({ sdpa: r.split.sdpa, pipeline: r.split.pipeline })}`);
  const l = r.split.deviceLimits;
  expect(r.split.deviceLimit).toBe(Math.min(l.maxStorageBufferBindingSize!, l.maxBufferSize!));
  expect(r.split.deviceLimit).toBeGreaterThan(0);
  expect(r.split.pipeline).toBeDefined();
  expectSplit(r.split, true);
}, 240000);

test('checkGenerationFits names what does not fit and the options to lower', () => {
  const plan = { height: 2048, width: 2048, vaeScale: 4, unetChannels: [32, 64, 128], vaeChannels: [16, 32, 64], heads: 4, batch: 2 };
  setBufferLimit(128 * 2 ** 20);
  try {
    expect(checkGenerationFits(plan)).toEqual([
      '2048×2048: UNet skip concatenation needs 192.0 MiB, over the 128.0 MiB buffer limit of cpu: lower height and width (--height, --width) or the number of images (numImagesPerPrompt, --num-images)',
      '2048×2048: VAE decoder activation needs 512.0 MiB, over the 128.0 MiB buffer limit of cpu: lower height and width (--height, --width)',
    ]);
    expect(checkGenerationFits({ ...plan, height: 64, width: 64 })).toEqual([]);
  } finally {
    setBufferLimit(null);
  }
});
