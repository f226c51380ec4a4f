/** DPMSolverMultistepScheduler (diffusers v0.30.3), DPM-Solver++ (data prediction), orders 1–3. */
import * as tf from '@tensorflow/tfjs-core';
import { SchedulerBase, checkOneOf, type StepOptions, type StepOutput } from './base.js';
import {
  f32, interpUnitGrid, karrasSigmas, logF32, npArange, npLinspace, roundHalfEven, sigmaToT, sigmasFromAlphasCumprod,
} from './schedule.js';

export const DPM_DEFAULTS: Record<string, unknown> = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  use_karras_sigmas: false,
  use_lu_lambdas: false,
  final_sigmas_type: 'zero',
  lambda_min_clipped: -Infinity,
  variance_type: null,
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

/** A number from a config value; python's JSON writes ±inf as `Infinity`, some tools as the string "-inf". */
function configNumber(v: unknown): number {
  if (typeof v === 'string' && /^-?inf(inity)?$/i.test(v)) return v.startsWith('-') ? -Infinity : Infinity;
  return Number(v);
}

/** α_t, σ_t of the VP process for the k-diffusion sigma σ (float32 like diffusers' tensors). */
function alphaSigma(sigma: number): [number, number] {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [a, f32(sigma * a)];
}

/** λ = log α − log σ (float32; +∞ when σ = 0, which makes the last step return x̂₀ exactly as in torch). */
const lambdaOf = (a: number, s: number): number => f32(f32(Math.log(a)) - f32(Math.log(s)));

/** Multistep DPM-Solver++ (arXiv 2211.01095) with diffusers' lower-order warm-up and final steps. */
export class DPMSolverMultistepScheduler extends SchedulerBase {
  sigmas: number[] = [];
  /** Data predictions of the last `solver_order` steps (oldest first; owned by the scheduler). */
  private modelOutputs: (tf.Tensor | null)[] = [];
  private lowerOrderNums = 0;

  constructor(config: Record<string, unknown> = {}) {
    super('DPMSolverMultistepScheduler', DPM_DEFAULTS, config);
    const c = this.config;
    const cls = this.cls;
    // "deis" and the UniPC solver types are aliases diffusers rewrites on load.
    if (c.algorithm_type === 'deis') c.algorithm_type = 'dpmsolver++';
    if (['logrho', 'bh1', 'bh2'].includes(c.solver_type as string)) c.solver_type = 'midpoint';
    checkOneOf(cls, 'algorithm_type', c.algorithm_type, ['dpmsolver++']);
    checkOneOf(cls, 'solver_type', c.solver_type, ['midpoint', 'heun']);
    checkOneOf(cls, 'solver_order', c.solver_order, [1, 2, 3]);
    checkOneOf(cls, 'final_sigmas_type', c.final_sigmas_type, ['zero', 'sigma_min']);
    checkOneOf(cls, 'variance_type', c.variance_type ?? null, [null]);
    checkOneOf(cls, 'use_lu_lambdas', c.use_lu_lambdas ?? false, [false]);
    checkOneOf(cls, 'use_karras_sigmas', c.use_karras_sigmas ?? false, [false, true]);
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    this.reset();
    const c = this.config;
    const T = this.num('num_train_timesteps');
    const ac = this.alphasCumprod;
    // Clip the smallest λ(t) for stability (cosine schedules): searchsorted on the ascending (flipped) λ table.
    const lmin = configNumber(c.lambda_min_clipped);
    let clipped = 0;
    for (let i = ac.length - 1; i >= 0; i--) {
      const a = f32(Math.sqrt(ac[i]));
      const s = f32(Math.sqrt(f32(1 - ac[i])));
      if (lambdaOf(a, s) >= lmin) break;
      clipped++;
    }
    const last = T - clipped;
    let ts: number[];
    if (c.timestep_spacing === 'linspace') ts = npLinspace(0, last - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(last / (n + 1));
      ts = npArange(0, n + 1).map((i) => roundHalfEven(i * ratio)).reverse().slice(0, -1).map((v) => v + this.num('steps_offset'));
    } else ts = npArange(last, 0, -T / n).map((v) => roundHalfEven(v) - 1);
    const table = sigmasFromAlphasCumprod(ac);
    let sig: number[];
    if (c.use_karras_sigmas) {
      sig = karrasSigmas(table[0], table[table.length - 1], n);
      const logSig = logF32(table);
      ts = sig.map((s) => roundHalfEven(sigmaToT(s, logSig)));
    } else sig = ts.map((t) => interpUnitGrid(t, table));
    const lastSigma = c.final_sigmas_type === 'sigma_min' ? table[0] : 0;
    this.sigmas = [...sig, lastSigma].map(f32);
    this.timesteps = ts;
    this.numInferenceSteps = ts.length;
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.modelOutputs.filter((m): m is tf.Tensor => m !== null));
    this.modelOutputs = new Array<tf.Tensor | null>(Number(this.config.solver_order)).fill(null);
    this.lowerOrderNums = 0;
  }

  /** x̂₀ (data prediction) from the model output at step i. */
  private convertModelOutput(mo: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const [a, s] = alphaSigma(this.sigmas[i]);
    const pt = this.config.prediction_type;
    if (pt === 'epsilon') return tf.div(tf.sub(sample, tf.mul(s, mo)), a);
    if (pt === 'v_prediction') return tf.sub(tf.mul(a, sample), tf.mul(s, mo));
    return tf.clone(mo);
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    if (this.numInferenceSteps === null) throw new Error('DPMSolverMultistepScheduler: call setTimesteps before step');
    const i = this.currentStepIndex(t);
    const c = this.config;
    const n = this.timesteps.length;
    const order = Number(c.solver_order);
    const lowerFinal = i === n - 1 && (c.euler_at_final === true || (c.lower_order_final === true && n < 15) || c.final_sigmas_type === 'zero');
    const lowerSecond = i === n - 2 && c.lower_order_final === true && n < 15;
    const x0 = tf.tidy(() => this.convertModelOutput(modelOutput, sample, i));
    const dropped = this.modelOutputs.shift();
    dropped?.dispose();
    this.modelOutputs.push(x0);
    const m = this.modelOutputs;
    const prevSample = tf.tidy(() => {
      if (order === 1 || this.lowerOrderNums < 1 || lowerFinal) return this.firstOrder(x0, sample, i);
      if (order === 2 || this.lowerOrderNums < 2 || lowerSecond) return this.secondOrder(m[order - 1]!, m[order - 2]!, sample, i);
      return this.thirdOrder(m[2]!, m[1]!, m[0]!, sample, i);
    });
    if (this.lowerOrderNums < order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample };
  }

  /** σ/α/λ at step index i (sigma table entry i). */
  private at(i: number): { s: number; a: number; sig: number; lam: number } {
    const [a, sig] = alphaSigma(this.sigmas[i]);
    return { s: this.sigmas[i], a, sig, lam: lambdaOf(a, sig) };
  }

  /** DPM-Solver++ first order (= DDIM in data prediction). */
  private firstOrder(x0: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const t = this.at(i + 1);
    const s0 = this.at(i);
    const h = f32(t.lam - s0.lam);
    return tf.sub(tf.mul(f32(t.sig / s0.sig), sample), tf.mul(f32(t.a * f32(Math.exp(-h) - 1)), x0));
  }

  private secondOrder(m0: tf.Tensor, m1: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const t = this.at(i + 1);
    const s0 = this.at(i);
    const s1 = this.at(i - 1);
    const h = f32(t.lam - s0.lam);
    const h0 = f32(s0.lam - s1.lam);
    const r0 = f32(h0 / h);
    const d1 = tf.mul(f32(1 / r0), tf.sub(m0, m1));
    const em1 = f32(Math.exp(-h) - 1);
    const base = tf.sub(tf.mul(f32(t.sig / s0.sig), sample), tf.mul(f32(t.a * em1), m0));
    if (this.config.solver_type === 'midpoint') return tf.sub(base, tf.mul(f32(0.5 * f32(t.a * em1)), d1));
    return tf.add(base, tf.mul(f32(t.a * f32(f32(em1 / h) + 1)), d1));
  }

  private thirdOrder(m0: tf.Tensor, m1: tf.Tensor, m2: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const t = this.at(i + 1);
    const s0 = this.at(i);
    const s1 = this.at(i - 1);
    const s2 = this.at(i - 2);
    const h = f32(t.lam - s0.lam);
    const r0 = f32(f32(s0.lam - s1.lam) / h);
    const r1 = f32(f32(s1.lam - s2.lam) / h);
    const d10 = tf.mul(f32(1 / r0), tf.sub(m0, m1));
    const d11 = tf.mul(f32(1 / r1), tf.sub(m1, m2));
    const d1 = tf.add(d10, tf.mul(f32(r0 / f32(r0 + r1)), tf.sub(d10, d11)));
    const d2 = tf.mul(f32(1 / f32(r0 + r1)), tf.sub(d10, d11));
    const em1 = f32(Math.exp(-h) - 1);
    return tf.sub(
      tf.add(tf.sub(tf.mul(f32(t.sig / s0.sig), sample), tf.mul(f32(t.a * em1), m0)), tf.mul(f32(t.a * f32(f32(em1 / h) + 1)), d1)),
      tf.mul(f32(t.a * f32(f32(f32(em1 + h) / f32(h * h)) - 0.5)), d2),
    );
  }

  override dispose(): void {
    this.reset();
  }
}
