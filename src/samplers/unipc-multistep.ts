/** UniPCMultistepScheduler (diffusers v0.30.3): the UniPC predictor–corrector (arXiv 2302.04867), variants bh1/bh2. */
import * as tf from '@tensorflow/tfjs-core';
import { MAX_TRAIN_TIMESTEPS, SOLVER_DEFAULTS, IndexedScheduler, type StepOptions, type StepOutput } from './base.js';
import { vpNode, type DpmNode } from './dpm-solver-updates.js';
import { alphaSigma, solverSchedule, withFinalSigma } from './multistep-schedule.js';
import { f32 } from './schedule.js';
import { thresholdSample } from './threshold.js';
import { rule } from '../io/config.js';

export const UNIPC_DEFAULTS: Record<string, unknown> = {
  ...SOLVER_DEFAULTS,
  predict_x0: true,
  solver_type: 'bh2',
  lower_order_final: true,
  disable_corrector: [],
  solver_p: null,
  use_karras_sigmas: false,
  timestep_spacing: 'linspace',
  steps_offset: 0,
  final_sigmas_type: 'zero',
  rescale_betas_zero_snr: false,
};

/** Solves the small dense system A·x = b (Gaussian elimination with partial pivoting, float32 roundings). */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  for (let col = 0; col < n; col++) {
    let p = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(M[r][col]) > Math.abs(M[p][col])) p = r;
    [M[col], M[p]] = [M[p], M[col]];
    for (let r = col + 1; r < n; r++) {
      const f = f32(M[r][col] / M[col][col]);
      for (let k = col; k <= n; k++) M[r][k] = f32(M[r][k] - f32(f * M[col][k]));
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s = f32(s - f32(M[r][k] * x[k]));
    x[r] = f32(s / M[r][r]);
  }
  return x;
}

/** The UniPC B(h) and right-hand side b_i = h·φ_{i}(h)·i!/B(h) of an order-`order` update (float32 recurrences). */
function uniCoefficients(hh: number, order: number, bh1: boolean): { hPhi1: number; bH: number; b: number[] } {
  const hPhi1 = f32(Math.expm1(hh));
  let hPhiK = f32(f32(hPhi1 / hh) - 1);
  let factorial = 1;
  const bH = bh1 ? hh : hPhi1;
  const b: number[] = [];
  for (let i = 1; i <= order; i++) {
    b.push(f32(f32(hPhiK * factorial) / bH));
    factorial *= i + 1;
    hPhiK = f32(f32(hPhiK / hh) - f32(1 / factorial));
  }
  return { hPhi1, bH, b };
}

/**
 * UniPC: a predictor (UniP) step, then at the next step a corrector (UniC) that refines the sample with the new
 * model output before predicting again. `solver_p` (a second scheduler as predictor) is not supported.
 *
 * NaN traps rejected (the constructor throws): with final_sigmas_type "zero", solver_type "bh1" makes diffusers 0.30.3
 * return all-NaN latents at the last step (σ = 0 gives B(h) = −∞ times a zero residual), and lower_order_final=false
 * with solver_order > 1 divides by a zero λ-ratio there (inf/NaN, or a singular solve for order 3).
 */
export class UniPCMultistepScheduler extends IndexedScheduler {
  sigmas: number[] = [];
  private modelOutputs: (tf.Tensor | null)[] = [];
  /** The sample the last predictor started from (owned), for the next corrector. */
  private lastSample: tf.Tensor | null = null;
  private lowerOrderNums = 0;
  private thisOrder = 1;

  constructor(config: Record<string, unknown> = {}) {
    const c = { ...config };
    // diffusers rewrites the other solvers' names (so DPM-Solver / DEIS configs switch to UniPC).
    if (['midpoint', 'heun', 'logrho'].includes(c.solver_type as string)) c.solver_type = 'bh2';
    super('UniPCMultistepScheduler', UNIPC_DEFAULTS, c, [
      ['solver_type', rule.oneOf(['bh1', 'bh2'])], ['solver_order', rule.int(1, 3)], ['predict_x0', rule.bool()],
      ['lower_order_final', rule.bool()], ['solver_p', rule.oneOf([null])], ['use_karras_sigmas', rule.bool()],
      ['final_sigmas_type', rule.oneOf(['zero', 'sigma_min'])], ['rescale_betas_zero_snr', rule.bool()],
      // Step indices after which the corrector is skipped.
      ['disable_corrector', rule.list(rule.int(), 0, MAX_TRAIN_TIMESTEPS)],
    ]);
    const r = this.configReader();
    if (this.config.final_sigmas_type === 'zero') {
      if (this.config.solver_type === 'bh1') {
        throw r.fail('solver_type', 'with final_sigmas_type "zero" gives NaN at the last step in diffusers 0.30.3; use final_sigmas_type "sigma_min" or solver_type "bh2"');
      }
      if (this.config.lower_order_final === false && Number(this.config.solver_order) > 1) {
        // The last predictor would divide by r_k = Δλ/h = 0 (h = ∞ onto σ = 0): inf/NaN, or a singular solve.
        throw r.fail('lower_order_final', 'with solver_order>1 and final_sigmas_type "zero" gives non-finite latents at the last step in diffusers 0.30.3; use lower_order_final true or final_sigmas_type "sigma_min"');
      }
    }
    if (this.config.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    const { timesteps, sigmas, minSigma } = solverSchedule(this.config, this.alphasCumprod, n);
    this.startRun();
    this.timesteps = timesteps;
    this.sigmas = withFinalSigma(sigmas, this.config.final_sigmas_type === 'sigma_min' ? minSigma : 0);
    this.numInferenceSteps = timesteps.length;
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.modelOutputs.filter((m): m is tf.Tensor => m !== null));
    this.modelOutputs = new Array<tf.Tensor | null>(Number(this.config.solver_order)).fill(null);
    this.lastSample?.dispose();
    this.lastSample = null;
    this.lowerOrderNums = 0;
    this.thisOrder = 1;
  }

  override timestepNotFound(): number {
    return this.timesteps.length - 1;
  }

  private get predictX0(): boolean {
    return this.config.predict_x0 !== false;
  }

  /** x̂₀ (predict_x0) or ε from the model output at step i. */
  private convert(mo: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const [a, s] = alphaSigma(this.sigmas[i]);
    const pt = this.config.prediction_type;
    if (this.predictX0) {
      let x0: tf.Tensor;
      if (pt === 'epsilon') x0 = tf.div(tf.sub(sample, tf.mul(s, mo)), a);
      else if (pt === 'v_prediction') x0 = tf.sub(tf.mul(a, sample), tf.mul(s, mo));
      else x0 = tf.clone(mo);
      const c = this.config;
      return c.thresholding ? thresholdSample(x0, Number(c.dynamic_thresholding_ratio), Number(c.sample_max_value)) : x0;
    }
    if (pt === 'epsilon') return tf.clone(mo);
    if (pt === 'sample') return tf.div(tf.sub(sample, tf.mul(a, mo)), s);
    return tf.add(tf.mul(a, mo), tf.mul(s, sample));
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    const i = this.currentStepIndex(t);
    const c = this.config;
    const useCorrector = i > 0 && !(c.disable_corrector as number[]).includes(i - 1) && this.lastSample !== null;
    const converted = tf.tidy(() => this.convert(modelOutput, sample, i));
    let x = sample;
    if (useCorrector) x = tf.tidy(() => this.corrector(converted, i, this.thisOrder));
    this.modelOutputs.shift()?.dispose();
    this.modelOutputs.push(converted);
    const order = Number(c.solver_order);
    const n = this.timesteps.length;
    this.thisOrder = Math.min(c.lower_order_final ? Math.min(order, n - i) : order, this.lowerOrderNums + 1);
    this.lastSample?.dispose();
    this.lastSample = x === sample ? tf.keep(tf.clone(sample)) : x;
    const prevSample = tf.tidy(() => this.predictor(x, i, this.thisOrder));
    if (this.lowerOrderNums < order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample };
  }

  /**
   * The terms both updates share, from `s0` (sigma index j) to `t` (j + 1): the history differences
   * D_k = (m_{−k−1} − m0)/r_k (output m_{−k−1} was taken at sigma index j − k), their λ ratios r_k and the φ
   * coefficients. The predictor calls it after storing the new output, the corrector before (with j = i − 1).
   */
  private terms(j: number, order: number) {
    const t = vpNode(this.sigmas[j + 1]);
    const s0 = vpNode(this.sigmas[j]);
    const h = f32(t.lam - s0.lam);
    const hh = this.predictX0 ? -h : h;
    const m = this.modelOutputs;
    const m0 = m[m.length - 1]!;
    const rks: number[] = [];
    const d1s: tf.Tensor[] = [];
    for (let k = 1; k < order; k++) {
      const si = vpNode(this.sigmas[j - k]);
      const rk = f32(f32(si.lam - s0.lam) / h);
      rks.push(rk);
      d1s.push(tf.div(tf.sub(m[m.length - 1 - k]!, m0), rk));
    }
    rks.push(1);
    const R = Array.from({ length: order }, (_, p) => rks.map((r) => f32(r ** p)));
    return { t, s0, m0, d1s, R, ...uniCoefficients(hh, order, this.config.solver_type === 'bh1') };
  }

  /** x_t = x_t^(1) − c·Σ_k ρ_k·D_k − …, written for data (predict_x0) or noise prediction. */
  private combine(t: DpmNode, s0: DpmNode, x: tf.Tensor, m0: tf.Tensor, hPhi1: number, bH: number, res: tf.Tensor | null): tf.Tensor {
    const base = this.predictX0
      ? tf.sub(tf.mul(f32(t.s / s0.s), x), tf.mul(f32(t.a * hPhi1), m0))
      : tf.sub(tf.mul(f32(t.a / s0.a), x), tf.mul(f32(t.s * hPhi1), m0));
    return res === null ? base : tf.sub(base, tf.mul(f32((this.predictX0 ? t.a : t.s) * bH), res));
  }

  /** Σ_k w_k·D_k. */
  private static weighted(w: number[], d: tf.Tensor[]): tf.Tensor | null {
    if (d.length === 0) return null;
    return d.slice(1).reduce((acc, dk, k) => tf.add(acc, tf.mul(w[k + 1], dk)), tf.mul(w[0], d[0]));
  }

  /** UniP: from the sample at step i to step i + 1. */
  private predictor(x: tf.Tensor, i: number, order: number): tf.Tensor {
    const { t, s0, m0, d1s, R, hPhi1, bH, b } = this.terms(i, order);
    const rhos = order === 2 ? [0.5] : order > 2 ? solve(R.slice(0, -1).map((r) => r.slice(0, -1)), b.slice(0, -1)) : [];
    return this.combine(t, s0, x, m0, hPhi1, bH, UniPCMultistepScheduler.weighted(rhos, d1s));
  }

  /** UniC: refines the previous predictor's result (from `lastSample` at step i − 1) with the new output `mt`. */
  private corrector(mt: tf.Tensor, i: number, order: number): tf.Tensor {
    const { t, s0, m0, d1s, R, hPhi1, bH, b } = this.terms(i - 1, order);
    const rhos = order === 1 ? [0.5] : solve(R, b);
    const corr = UniPCMultistepScheduler.weighted(rhos.slice(0, -1), d1s);
    const d1t = tf.mul(rhos[rhos.length - 1], tf.sub(mt, m0));
    return this.combine(t, s0, this.lastSample!, m0, hPhi1, bH, corr === null ? d1t : tf.add(corr, d1t));
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseVp(original, noise, timesteps, this.sigmas);
  }
}
