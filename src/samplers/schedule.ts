/**
 * Noise-schedule arithmetic shared by the samplers, in JS numbers.
 *
 * diffusers keeps `betas`/`alphas_cumprod` as float32 torch tensors and builds its sigma tables with numpy in
 * float64 from those float32 values. To land on the same numbers we emulate each float32 rounding with
 * `Math.fround` (correct for + − × ÷ and sqrt: float64 evaluation of a float32 op then rounding is exact) and
 * keep everything else in float64, as numpy does.
 */

/** Round to float32 (the precision of a torch float32 tensor element). */
export const f32 = Math.fround;

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

/**
 * `torch.linspace(start, end, steps, dtype=float32)` as computed by torch's CPU kernel: the step is float32; whole
 * blocks of 16 take the vector path, where each 8-wide chunk starts at `start + step*idx` (a fused multiply–add,
 * hence one rounding; the second half counts back from `end`) and lanes add `step*j` to the chunk base; the
 * remaining < 16 values take the scalar path, `start + step*idx` or `end − step*(steps−idx−1)`, one rounding each.
 * Verified bit-exact against the recorded alphas_cumprod (1000 steps) and EDM sigmas (7, 13, 25 steps).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32((e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const fromEnds = (i: number): number => (i < half ? f32(s + step * i) : f32(e - step * (steps - i - 1)));
  const vectorEnd = steps - (steps % 16);
  const W = 8;
  for (let i = 0; i < steps; i++) {
    if (i >= vectorEnd) {
      out[i] = fromEnds(i);
      continue;
    }
    const c = i - (i % W);
    out[i] = f32(fromEnds(c) + step * (i - c));
  }
  return out;
}

/** diffusers `betas_for_alpha_bar` with the cosine alpha-bar (float64 math, then a float32 tensor). */
export function betasForAlphaBar(numTrain: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float32Array(numTrain);
  for (let i = 0; i < numTrain; i++) {
    const t1 = i / numTrain;
    const t2 = (i + 1) / numTrain;
    out[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return out;
}

/** diffusers `rescale_zero_terminal_snr` (arXiv 2305.08891, Alg. 1), in float32 like the torch original. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const abarSqrt = new Float32Array(n);
  let cum = 1;
  for (let i = 0; i < n; i++) {
    cum *= f32(1 - betas[i]);
    abarSqrt[i] = Math.sqrt(f32(cum));
  }
  const a0 = abarSqrt[0];
  const aT = abarSqrt[n - 1];
  const scale = f32(a0 / f32(a0 - aT));
  const abar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(abarSqrt[i] - aT) * scale);
    abar[i] = v * v;
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - abar[0]);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(abar[i] / abar[i - 1]));
  return out;
}

/** Options shared by every sampler for building its training noise schedule. */
export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas?: number[] | null;
  rescale_betas_zero_snr?: boolean;
}

/** The float32 betas of a scheduler config (trained_betas wins, as in diffusers). */
export function makeBetas(cfg: BetaConfig): Float32Array {
  let betas: Float32Array;
  if (cfg.trained_betas != null) betas = Float32Array.from(cfg.trained_betas);
  else if (cfg.beta_schedule === 'linear') betas = torchLinspaceF32(cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps);
  else if (cfg.beta_schedule === 'scaled_linear') {
    betas = torchLinspaceF32(Math.sqrt(cfg.beta_start), Math.sqrt(cfg.beta_end), cfg.num_train_timesteps);
    for (let i = 0; i < betas.length; i++) betas[i] = betas[i] * betas[i];
  } else if (cfg.beta_schedule === 'squaredcos_cap_v2') betas = betasForAlphaBar(cfg.num_train_timesteps);
  else throw new Error(`unsupported beta_schedule=${JSON.stringify(cfg.beta_schedule)}`);
  if (cfg.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/**
 * `torch.cumprod(1 - betas)`: torch's CPU kernel accumulates in double and rounds each output to float32, which
 * is what we do (verified bit-exact against the recorded tables).
 */
export function alphasCumprod(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let cum = 1;
  for (let i = 0; i < betas.length; i++) {
    cum *= f32(1 - betas[i]);
    out[i] = cum;
  }
  return out;
}

/** `((1 - ac) / ac) ** 0.5` on the float32 tensor (each op rounded to float32). */
export function sigmasFromAlphasCumprod(ac: Float32Array): Float32Array {
  const out = new Float32Array(ac.length);
  for (let i = 0; i < ac.length; i++) out[i] = Math.sqrt(f32(f32(1 - ac[i]) / ac[i]));
  return out;
}

/** numpy `round` (half to even), used before casting timesteps to integers. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy `linspace(start, stop, num, endpoint)` in float64 (same formula, so the same roundings). */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const step = (stop - start) / div;
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(step === 0 ? (i / div) * (stop - start) + start : i * step + start);
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** numpy `arange(start, stop, step)` (length ceil((stop-start)/step), values start + i*step). */
export function npArange(start: number, stop: number, step = 1): number[] {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(start + i * step);
  return out;
}

/** numpy `interp(x, arange(len(fp)), fp)` on a unit-spaced grid. */
export function interpUnitGrid(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (x <= 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  const j = Math.floor(x);
  if (x === j) return fp[j];
  const slope = fp[j + 1] - fp[j];
  return slope * (x - j) + fp[j];
}

/** Karras et al. (2022) sigmas, rho = 7, in float64 as diffusers' `_convert_to_karras`. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** diffusers `_sigma_to_t`: piecewise-linear inverse of the log-sigma table (float64). */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const n = logSigmas.length;
  // argmax of cumsum(dists >= 0) = last index where log_sigma >= log_sigmas[i] (0 if none), clipped to n-2.
  let low = 0;
  let best = -1;
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (logSigma - logSigmas[i] >= 0) count++;
    if (count > best) {
      best = count;
      low = i;
    }
  }
  low = Math.min(low, n - 2);
  const lo = logSigmas[low];
  const hi = logSigmas[low + 1];
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** numpy float32 `np.log` of a float32 table (used by `_sigma_to_t`). */
export function logF32(a: Float32Array): Float32Array {
  return a.map((v) => Math.log(v));
}
