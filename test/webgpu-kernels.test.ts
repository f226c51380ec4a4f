/**
 * The fused WebGPU kernels (one-dispatch GroupNorm/LayerNorm with addend and SiLU, SiLU, GEGLU) agree with the
 * plain TF.js ops on Dawn, and the backend's buffer pool can be released. Runs wherever Dawn finds an adapter
 * (Mesa's GLES on CPU machines, as in CI).
 */
import { runWebgpuChild } from './webgpu-run.js';
import type { bufferPoolCheck, FusedReport } from './webgpu-kernels-check.js';

test('webgpu (Dawn): fused kernels match the plain ops (rel-L2 ≤ 1e-6) and leak nothing', async () => {
  const r = await runWebgpuChild<{ fused: FusedReport }>({ fused: true });
  if (r.skip !== undefined) {
    console.warn(`webgpu-kernels: SKIPPED — ${r.skip}`);
    return;
  }
  console.log(`[webgpu] ${r.details}\n${Object.entries(r.fused.relL2).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join('\n')}`);
  expect(Object.keys(r.fused.relL2).length).toBe(16);
  for (const [name, e] of Object.entries(r.fused.relL2)) {
    expect([name, e]).toEqual([name, expect.any(Number)]);
    expect(e).toBeLessThanOrEqual(1e-6);
  }
  expect(r.fused.leaked).toBe(0);
  // Set up by initBackend: TF.js's one-dispatch ops and the float16-weight readers always, our fused kernels only when on.
  const always = ['conv2dBias', 'conv2dHalf', 'gatherHalf', 'matMulBias', 'matMulHalf', 'normalize'];
  expect(r.fused.kernelsOff).toEqual(always);
  expect(r.fused.kernelsOn).toEqual([...always, 'attention', 'geglu', 'groupNorm', 'silu'].sort());
}, 300000);

test('webgpu (Dawn): releaseWebgpuBufferPool frees the pooled buffers, compute goes on, and disposing a model frees them too', async () => {
  const r = await runWebgpuChild<{ pool: Awaited<ReturnType<typeof bufferPoolCheck>> }>({ pool: true });
  if (r.skip !== undefined) {
    console.warn(`webgpu buffer pool: SKIPPED — ${r.skip}`);
    return;
  }
  // Three released tensors of 1000–3000 floats (and the scalars of tf.add) at least.
  expect(r.pool.freed).toBeGreaterThanOrEqual(4 * (1000 + 2000 + 3000));
  expect(r.pool.allocatedAfter).toBe(r.pool.allocatedBefore - r.pool.freed);
  expect(r.pool.sumAfter).toBe(4000);
  expect(r.pool.pooledAfterDispose).toBe(0);
}, 300000);
