/**
 * The analytic MAC count of bench/macs.ts (which the benchmark's GFLOP/s and MAC ratios rest on) against the
 * T-GATE paper's table: baselines to 0.05 %, and the paper's TGATE column as T-GATE v1's schedule
 * (cross-attention cached, guidance dropped from the gate on) at gate 5 (SD-1.5, SDXL) and 8 (PixArt-α); with a
 * ControlNet, its forward counted at every step beside the UNet's (the benchmark's MAC ratio with `--controlnet`).
 */
import { PAPER, controlnetGenerationMacs, crossOnlyMacs, forwardMacs, generationMacs, loadConfig, totalMacs } from '../bench/macs.js';
import { controlnetConfigFromUnet } from '../src/models/controlnet-config.js';

const CASES = [['sd15', 5], ['sdxl', 5], ['pixart', 8]] as const;

test.each(CASES)('%s: baseline and v1-at-gate-%i MACs match the paper within 0.05 %', (key, gate) => {
  const p = PAPER[key];
  const f = forwardMacs(loadConfig(key), { height: p.size, width: p.size, latentScale: p.latentScale });
  expect(Math.abs(generationMacs(f, 25, null) / p.baseline - 1)).toBeLessThan(5e-4);
  expect(Math.abs(crossOnlyMacs(f, 25, gate) / p.tgated - 1)).toBeLessThan(5e-4);
  // The README settings skip less: the schedule actually run has a smaller MAC ratio than the paper's column.
  expect(generationMacs(f, 25, p.tgate)).toBeGreaterThan(1.1 * p.tgated);
});

test('with a ControlNet, a generation counts its forward at every step (guess mode: batch 1), gated like the UNet', () => {
  const p = PAPER.sd15;
  const o = { height: p.size, width: p.size, latentScale: p.latentScale };
  const unetCfg = loadConfig('sd15');
  const f = forwardMacs(unetCfg, o);
  const cn = forwardMacs(controlnetConfigFromUnet(unetCfg), o);
  for (const tgate of [null, p.tgate]) {
    expect(controlnetGenerationMacs(f, [cn], 25, tgate)).toBe(generationMacs(f, 25, tgate) + generationMacs(cn, 25, tgate));
    expect(controlnetGenerationMacs(f, [cn, cn], 25, tgate, { matmul: true })).toBe(generationMacs(f, 25, tgate, true) + 2 * generationMacs(cn, 25, tgate, true));
  }
  // Guess mode: the ControlNet runs the conditional half only, before the gate as after.
  expect(controlnetGenerationMacs(f, [cn], 25, null, { guessMode: true })).toBe(generationMacs(f, 25, null) + 25 * totalMacs(cn));
  const ratio = controlnetGenerationMacs(f, [cn], 25, null) / controlnetGenerationMacs(f, [cn], 25, p.tgate);
  console.log(`SD-1.5 512² + ControlNet, 25 steps: ControlNet forward ${(totalMacs(cn) / 1e9).toFixed(2)} GMACs vs UNet ${(totalMacs(f) / 1e9).toFixed(2)}; TGATE MAC ratio ${ratio.toFixed(3)} (UNet alone ${(generationMacs(f, 25, null) / generationMacs(f, 25, p.tgate)).toFixed(3)})`);
  expect(ratio).toBeGreaterThan(1.4);
});
