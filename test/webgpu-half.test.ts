/**
 * float16 weights on WebGPU (Dawn): the kernels reading packed halves equal the float32 ops given the same
 * half-rounded weights; the tiny-shapes pipeline and the fixture models with float16 weights reproduce the
 * float32 path, with `tf.memory().numBytes` of the weights halved; a converted float16 folder's halves are
 * uploaded as stored; tables in row pieces bind no more than a piece. Runs wherever Dawn finds an adapter
 * (Mesa's GLES on CPU machines, as in CI).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runWebgpuChild } from './webgpu-run.js';
import type { HalfReport } from './webgpu-half-check.js';

const ASSET = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'assets', 'tiny-shapes');

/**
 * float16 against float32 weights: rounding every weight to 11 significant bits adds ~2.8e-4 of relative
 * noise per layer, which grows with depth. The fixture VAE decoder (about 30 convolutions deep, random
 * weights) reaches 1.3e-3; every other model stays under 1e-3.
 */
const MODEL_BOUND: Record<string, number> = { 'VAE decoder': 2e-3 };

test('webgpu (Dawn): float16 weights reproduce the float32 path with half the bytes', async () => {
  const r = await runWebgpuChild<{ half: HalfReport }>({ halfAsset: ASSET }, 600000);
  if (r.skip !== undefined) {
    console.warn(`webgpu-half: SKIPPED — ${r.skip}`);
    return;
  }
  const h = r.half;
  const e = (x: number) => x.toExponential(2);
  console.log([
    `[webgpu] ${r.details}`,
    ...Object.entries(h.kernels.relL2).map(([k, v]) => `kernel ${k}: ${e(v)}`),
    `table pieces: float32 ${h.kernels.pieces.float32}, float16 ${h.kernels.pieces.float16}; largest binding ${h.kernels.pieces.largestBinding} bytes`,
    `tiny-shapes pipeline, float16 vs float32 weights: latents ${e(h.pipeline.latents)}, image ${e(h.pipeline.image)}; weights ${h.pipeline.bytes16} vs ${h.pipeline.bytes32} bytes (${(h.pipeline.bytes16 / h.pipeline.bytes32).toFixed(4)})`,
    `float16 folder: ${h.folder.halvesRead} of ${h.folder.halfParams} float16 weights uploaded as stored; float16 vs float32 weights: latents ${e(h.folder.latents)}, image ${e(h.folder.image)}`,
    ...h.models.map((m) => `${m.name}: float16 vs float32 ${e(m.relL2)}; vs golden: float32 ${e(m.goldenF32)}, float16 ${e(m.goldenF16)}; bytes ${m.bytes16} / ${m.bytes32} = ${(m.bytes16 / m.bytes32).toFixed(4)}`),
  ].join('\n'));

  for (const [name, v] of Object.entries(h.kernels.relL2)) expect([name, v]).toEqual([name, expect.any(Number)]);
  for (const v of Object.values(h.kernels.relL2)) expect(v).toBeLessThanOrEqual(1e-6);
  // 50 rows × 24: 16-row float32 pieces and 32-row float16 pieces of at most 1536 bytes; no binding larger.
  expect(h.kernels.pieces).toEqual({ float32: 4, float16: 2, largestBinding: expect.any(Number), over: 0 });
  expect(h.kernels.pieces.largestBinding).toBeLessThanOrEqual(1536);

  expect(h.offloadError).toMatch(/float16 weights cannot be offloaded/);
  expect(h.pipeline.image).toBeLessThanOrEqual(1e-3);
  // Classifier-free guidance (7.5) amplifies the weights' rounding in the latents.
  expect(h.pipeline.latents).toBeLessThanOrEqual(2e-3);
  expect(Math.abs(h.pipeline.bytes16 / h.pipeline.bytes32 - 0.5)).toBeLessThanOrEqual(0.005);

  // The folder's halves feed float16 weights as stored; read as float32 they are the same values.
  expect(h.folder.halvesRead).toBe(h.folder.halfParams);
  expect(h.folder.halfParams).toBeGreaterThan(100);
  expect(h.folder.latents).toBeLessThanOrEqual(1e-4);
  expect(h.folder.image).toBeLessThanOrEqual(1e-4);
  expect(h.folder.bytes16).toBe(h.pipeline.bytes16);

  expect(h.models.map((m) => m.name)).toHaveLength(8);
  for (const m of h.models) {
    expect([m.name, m.relL2]).toEqual([m.name, expect.any(Number)]);
    expect(m.relL2).toBeLessThanOrEqual(MODEL_BOUND[m.name] ?? 1e-3);
    expect(m.goldenF32).toBeLessThanOrEqual(1e-5);
    // Weights held as halves take exactly 2 bytes each (biases and norms stay float32).
    expect(m.bytes16).toBe(m.expected16);
    expect(m.bytes16 / m.bytes32).toBeLessThan(0.52);
  }
  // Checkpoint weights already in fp16: the float16 path is exact up to float32 arithmetic.
  expect(h.models.find((m) => m.name === 'SD-1.5 UNet from fp16 weights')!.goldenF16).toBeLessThanOrEqual(1e-5);
  expect(h.leaked).toBe(0);
}, 600000);
