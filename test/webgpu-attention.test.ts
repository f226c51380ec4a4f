/**
 * The fused WebGPU attention kernel equals the reference attention (the plain sdpa path on cpu) within rel-L2
 * 1e-5 on the models' shapes and masks, under a buffer limit that forces the plain path to split its score
 * matrix, while the fused kernel needs no split; nothing leaks. Runs wherever Dawn finds an adapter (Mesa's
 * GLES on CPU machines, as in CI).
 */
import { runWebgpuChild } from './webgpu-run.js';
import { ATTENTION_CASES, type AttentionReport } from './webgpu-attention-check.js';

test('webgpu (Dawn): fused attention matches the reference within 1e-5 and needs no split', async () => {
  const r = await runWebgpuChild<{ attention: AttentionReport }>({ attention: true });
  if (r.skip !== undefined) {
    console.warn(`webgpu-attention: SKIPPED — ${r.skip}`);
    return;
  }
  console.log(`[webgpu] ${r.details}\n${r.attention.cases.map((c) =>
    `${c.name}: fused ${c.relL2.toExponential(2)} (${c.fusedSplits} splits), plain ${c.plainRelL2.toExponential(2)} (${c.plainSplits} split${c.plainSplits === 1 ? '' : 's'} at a ${c.limit}-byte limit for ${c.scoreBytes} bytes of scores)`).join('\n')}`);
  expect(r.attention.cases.map((c) => c.name)).toEqual(ATTENTION_CASES.map((c) => c.name));
  for (const c of r.attention.cases) {
    expect([c.name, c.relL2]).toEqual([c.name, expect.any(Number)]);
    expect(c.relL2).toBeLessThanOrEqual(1e-5);
    // The shape needed the split on the plain path; the fused kernel ran instead of it.
    expect(c.plainSplits).toBe(1);
    expect(c.fusedSplits).toBe(0);
    expect(c.plainRelL2).toBeLessThanOrEqual(1e-5);
  }
  expect(r.attention.leaked).toBe(0);
}, 300000);
