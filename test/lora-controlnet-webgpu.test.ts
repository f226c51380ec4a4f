/**
 * LoRA (unfused and fused, both file formats) and ControlNet on WebGPU (Dawn), in the WebGPU child process
 * (test/support/lora-controlnet-check.ts): the reference forwards within 1e-4, unfuse restoring every weight's
 * bytes, no tensor leak. LoRA on float16 weights: unfused and fused within float16's error of the reference
 * (the weights' own rounding: ≤ 2e-3), fused equal to unfused but for one rounding of W + Δ to halves, unfuse
 * restoring every half. Skipped only when Dawn has no adapter.
 */
import { runWebgpuChild } from './webgpu-run.js';
import type { LoraControlnetReport } from './support/lora-controlnet-check.js';

test('webgpu (Dawn): LoRA forwards, bit-exact unfuse and the ControlNet forward equal the reference', async () => {
  const r = await runWebgpuChild<{ loraControlnet: LoraControlnetReport }>({ loraControlnet: true }, 400_000);
  if (r.skip !== undefined) {
    console.warn(`lora-controlnet-webgpu: SKIPPED — ${r.skip}`);
    return;
  }
  const { errors, changedWeights, leakedTensors } = r.loraControlnet;
  console.log(`[webgpu] ${r.details}\n  ${Object.entries(errors).map(([k, e]) => `${k} ${e.toExponential(2)}`).join('\n  ')}`);
  expect(Object.keys(errors)).toHaveLength(16);
  for (const [k, e] of Object.entries(errors)) expect([k, e <= 1e-4]).toEqual([k, true]);
  expect(changedWeights).toBe(0);
  expect(leakedTensors).toBe(0);
  const h = r.loraControlnet.half;
  console.log(`[webgpu] float16 weights: ${Object.entries(h.errors).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')}; `
    + `fused vs unfused ${Object.entries(h.fusedVsUnfused).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')}; the LoRA moves the UNet output by ${h.loraEffect.toExponential(2)}`);
  expect(Object.keys(h.errors)).toHaveLength(4);
  for (const [k, e] of Object.entries(h.errors)) expect([k, e <= 2e-3]).toEqual([k, true]);
  for (const [k, e] of Object.entries(h.fusedVsUnfused)) expect([k, e <= 1e-3]).toEqual([k, true]);
  expect(h.loraEffect).toBeGreaterThan(1e-2);
  expect(h.changedWeights).toBe(0);
  expect(h.leakedTensors).toBe(0);
}, 420_000);
