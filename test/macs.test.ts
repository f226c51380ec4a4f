/**
 * The analytic MAC count of bench/macs.ts (which the benchmark's GFLOP/s and MAC ratios rest on) against the
 * T-GATE paper's table: baselines to 0.05 %, and the paper's TGATE column as T-GATE v1's schedule
 * (cross-attention cached, guidance dropped from the gate on) at gate 5 (SD-1.5, SDXL) and 8 (PixArt-α).
 */
import { PAPER, crossOnlyMacs, forwardMacs, generationMacs, loadConfig } from '../bench/macs.js';

const CASES = [['sd15', 5], ['sdxl', 5], ['pixart', 8]] as const;

test.each(CASES)('%s: baseline and v1-at-gate-%i MACs match the paper within 0.05 %', (key, gate) => {
  const p = PAPER[key];
  const f = forwardMacs(loadConfig(key), { height: p.size, width: p.size, latentScale: p.latentScale });
  expect(Math.abs(generationMacs(f, 25, null) / p.baseline - 1)).toBeLessThan(5e-4);
  expect(Math.abs(crossOnlyMacs(f, 25, gate) / p.tgated - 1)).toBeLessThan(5e-4);
  // The README settings skip less: the schedule actually run has a smaller MAC ratio than the paper's column.
  expect(generationMacs(f, 25, p.tgate)).toBeGreaterThan(1.1 * p.tgated);
});
