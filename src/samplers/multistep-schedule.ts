/**
 * Timesteps and sigmas of the discrete-time multistep solvers (DPM-Solver multistep and singlestep, UniPC, DEIS),
 * which share diffusers' "N + 1 points, drop the last" spacing and the Karras / Lu sigma options.
 */
import { f32, interpUnitGrid, karrasSigmas, logF32, npArange, npLinspace, roundHalfEven, sigmaToT, sigmasFromAlphasCumprod } from './schedule.js';

/** A config number; Python's JSON writes ±inf as `Infinity`, some tools as the string "-inf". */
export function configNumber(v: unknown): number {
  if (typeof v === 'string' && /^-?inf(inity)?$/i.test(v)) return v.startsWith('-') ? -Infinity : Infinity;
  return Number(v);
}

/** α_t, σ_t of the VP process for the k-diffusion sigma σ (float32 like diffusers' tensors). */
export function alphaSigma(sigma: number): [number, number] {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [a, f32(sigma * a)];
}

/** λ = log α − log σ (float32; +∞ when σ = 0). */
export const lambdaOf = (a: number, s: number): number => f32(f32(Math.log(a)) - f32(Math.log(s)));

/**
 * How many of the last training steps have λ(t) below `lambdaMin` (diffusers' `searchsorted` on the flipped λ
 * table), which the cosine schedule needs clipped for stability.
 */
export function clippedSteps(ac: Float32Array, lambdaMin: number): number {
  let clipped = 0;
  for (let i = ac.length - 1; i >= 0; i--) {
    const a = f32(Math.sqrt(ac[i]));
    const s = f32(Math.sqrt(f32(1 - ac[i])));
    if (lambdaOf(a, s) >= lambdaMin) break;
    clipped++;
  }
  return clipped;
}

/**
 * Integer timesteps, descending: `n + 1` points over [0, last − 1] with the final one dropped (linspace,
 * leading), or the trailing spacing from `last`. T is num_train_timesteps, `last` is T minus the clipped steps.
 */
export function multistepTimesteps(spacing: unknown, T: number, last: number, n: number, stepsOffset: number): number[] {
  if (spacing === 'linspace') return npLinspace(0, last - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
  if (spacing === 'leading') {
    const ratio = Math.floor(last / (n + 1));
    return npArange(0, n + 1).map((i) => roundHalfEven(i * ratio)).reverse().slice(0, -1).map((v) => v + stepsOffset);
  }
  return npArange(last, 0, -T / n).map((v) => roundHalfEven(v) - 1);
}

/** Which sigma table a solver builds from its timesteps. */
export type SigmaMode = 'interpolate' | 'karras' | 'lu';

/**
 * The float64 sigmas of a run (without the final one) and the timesteps they imply. Karras and Lu replace the
 * timesteps by the rounded inverse of the log-sigma table; Karras takes `sigma_min`/`sigma_max` from the config
 * when present (diffusers reads them with `hasattr`, so keys kept from another class's config count).
 */
export function multistepSigmas(
  cfg: Record<string, unknown>, ac: Float32Array, timesteps: number[], n: number, mode: SigmaMode,
): { timesteps: number[]; sigmas: number[]; table: Float32Array } {
  const table = sigmasFromAlphasCumprod(ac);
  const logSig = logF32(table);
  let sigmas: number[];
  if (mode === 'karras') {
    const sMin = cfg.sigma_min != null ? Number(cfg.sigma_min) : table[0];
    const sMax = cfg.sigma_max != null ? Number(cfg.sigma_max) : table[table.length - 1];
    if (!(sMin > 0 && sMax > sMin && Number.isFinite(sMax))) {
      throw new Error(`Karras sigmas need 0 < sigma_min < sigma_max, got sigma_min=${sMin}, sigma_max=${sMax}`);
    }
    sigmas = karrasSigmas(sMin, sMax, n);
  } else if (mode === 'lu') {
    // Uniform in log σ between the table's ends (Lu et al.'s uniform-λ spacing with rho = 1).
    const lMin = logSig[0];
    const lMax = logSig[logSig.length - 1];
    sigmas = npLinspace(0, 1, n).map((r) => Math.exp(lMax + r * (lMin - lMax)));
  } else return { timesteps, sigmas: timesteps.map((t) => interpUnitGrid(t, table)), table };
  return { timesteps: sigmas.map((s) => roundHalfEven(sigmaToT(s, logSig))), sigmas, table };
}

/**
 * UniPC's and DEIS's schedule: spacing over all T training steps (no λ clipping), Karras optional. `minSigma` is
 * the run's smallest sigma, which their "sigma_min" final sigma means: the Karras end, else the training table's.
 */
export function solverSchedule(c: Record<string, unknown>, ac: Float32Array, n: number): { timesteps: number[]; sigmas: number[]; minSigma: number } {
  const T = Number(c.num_train_timesteps);
  const ts = multistepTimesteps(c.timestep_spacing, T, T, n, Number(c.steps_offset));
  const karras = c.use_karras_sigmas === true;
  const { timesteps, sigmas, table } = multistepSigmas(c, ac, ts, n, karras ? 'karras' : 'interpolate');
  return { timesteps, sigmas, minSigma: karras ? sigmas[sigmas.length - 1] : table[0] };
}

/** Appends the final sigma and rounds the table to float32, as diffusers stores it. */
export const withFinalSigma = (sigmas: number[], last: number): number[] => [...sigmas, last].map(f32);
