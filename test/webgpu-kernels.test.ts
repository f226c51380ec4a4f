/**
 * The fused WebGPU kernels (GroupNorm/LayerNorm moments + normalise with SiLU, SiLU, GEGLU) agree with the
 * plain TF.js ops on Dawn. Runs wherever Dawn finds an adapter (Mesa's GLES on CPU machines, as in CI).
 */
import { runWebgpuChild } from './webgpu-run.js';
import type { FusedReport } from './webgpu-kernels-check.js';

test('webgpu (Dawn): fused kernels match the plain ops (rel-L2 ≤ 1e-6) and leak nothing', async () => {
  const r = await runWebgpuChild<{ fused: FusedReport }>({ fused: true });
  if (r.skip !== undefined) {
    console.warn(`webgpu-kernels: SKIPPED — ${r.skip}`);
    return;
  }
  console.log(`[webgpu] ${r.details}\n${Object.entries(r.fused.relL2).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join('\n')}`);
  expect(Object.keys(r.fused.relL2).length).toBe(12);
  for (const [name, e] of Object.entries(r.fused.relL2)) {
    expect([name, e]).toEqual([name, expect.any(Number)]);
    expect(e).toBeLessThanOrEqual(1e-6);
  }
  expect(r.fused.leaked).toBe(0);
}, 300000);
