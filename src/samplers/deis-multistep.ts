/** DEISMultistepScheduler (diffusers v0.30.3): log-ρ DEIS (arXiv 2204.13902), orders 1–3. */
import * as tf from '@tensorflow/tfjs-core';
import { SOLVER_DEFAULTS, IndexedScheduler, type StepOptions, type StepOutput } from './base.js';
import { vpNode, type DpmNode } from './dpm-solver-updates.js';
import { alphaSigma, solverSchedule, withFinalSigma } from './multistep-schedule.js';
import { f32 } from './schedule.js';
import { thresholdSample } from './threshold.js';
import { rule } from '../io/config.js';

export const DEIS_DEFAULTS: Record<string, unknown> = {
  ...SOLVER_DEFAULTS,
  algorithm_type: 'deis',
  solver_type: 'logrho',
  lower_order_final: true,
  use_karras_sigmas: false,
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

/** numpy's float32 log of a float32 value. */
const ln = (x: number): number => f32(Math.log(x));

/** ∫ of the 2-point Lagrange basis in log ρ (diffusers' `ind_fn`), float32 like the numpy scalars it uses. */
function ind2(t: number, b: number, c: number): number {
  return f32(f32(t * f32(f32(-ln(c) + ln(t)) - 1)) / f32(ln(b) - ln(c)));
}

/** The 3-point version (diffusers' third-order `ind_fn`). */
function ind3(t: number, b: number, c: number, d: number): number {
  const [lt, lc, ld, lb] = [ln(t), ln(c), ln(d), ln(b)];
  let num = f32(lc * f32(f32(ld - lt) + 1));
  num = f32(num - f32(ld * lt));
  num = f32(num + ld);
  num = f32(num + f32(lt * lt));
  num = f32(num - f32(2 * lt));
  num = f32(num + 2);
  return f32(f32(t * num) / f32(f32(lb - lc) * f32(lb - ld)));
}

/**
 * DEIS integrates the noise prediction in ρ = σ/α with polynomial extrapolation in log ρ. Its final sigma is always
 * the training schedule's smallest (with Karras sigmas diffusers repeats the last one, so the last step is a no-op).
 */
export class DEISMultistepScheduler extends IndexedScheduler {
  sigmas: number[] = [];
  private modelOutputs: (tf.Tensor | null)[] = [];
  private lowerOrderNums = 0;

  constructor(config: Record<string, unknown> = {}) {
    const c = { ...config };
    // diffusers rewrites the other solvers' names (so DPM-Solver / UniPC configs switch to DEIS).
    if (c.algorithm_type === 'dpmsolver' || c.algorithm_type === 'dpmsolver++') c.algorithm_type = 'deis';
    if (['midpoint', 'heun', 'bh1', 'bh2'].includes(c.solver_type as string)) c.solver_type = 'logrho';
    super('DEISMultistepScheduler', DEIS_DEFAULTS, c, [
      ['algorithm_type', rule.oneOf(['deis'])], ['solver_type', rule.oneOf(['logrho'])], ['solver_order', rule.oneOf([1, 2, 3])],
      ['lower_order_final', rule.bool()], ['use_karras_sigmas', rule.bool()],
    ]);
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    const { timesteps, sigmas, minSigma } = solverSchedule(this.config, this.alphasCumprod, n);
    this.startRun();
    this.timesteps = timesteps;
    this.sigmas = withFinalSigma(sigmas, minSigma);
    this.numInferenceSteps = timesteps.length;
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.modelOutputs.filter((m): m is tf.Tensor => m !== null));
    this.modelOutputs = new Array<tf.Tensor | null>(Number(this.config.solver_order)).fill(null);
    this.lowerOrderNums = 0;
  }

  override timestepNotFound(): number {
    return this.timesteps.length - 1;
  }

  /** ε from the model output, through x̂₀ (optionally thresholded) as diffusers does. */
  private convert(mo: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const [a, s] = alphaSigma(this.sigmas[i]);
    const c = this.config;
    let x0: tf.Tensor;
    if (c.prediction_type === 'epsilon') x0 = tf.div(tf.sub(sample, tf.mul(s, mo)), a);
    else if (c.prediction_type === 'v_prediction') x0 = tf.sub(tf.mul(a, sample), tf.mul(s, mo));
    else x0 = mo;
    if (c.thresholding) x0 = thresholdSample(x0, Number(c.dynamic_thresholding_ratio), Number(c.sample_max_value));
    return tf.div(tf.sub(sample, tf.mul(a, x0)), s);
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    const i = this.currentStepIndex(t);
    const c = this.config;
    const n = this.timesteps.length;
    const order = Number(c.solver_order);
    const lower = c.lower_order_final === true && n < 15;
    const converted = tf.tidy(() => this.convert(modelOutput, sample, i));
    this.modelOutputs.shift()?.dispose();
    this.modelOutputs.push(converted);
    const m = this.modelOutputs;
    const nt = vpNode(this.sigmas[i + 1]);
    const s0 = vpNode(this.sigmas[i]);
    const prevSample = tf.tidy(() => {
      if (order === 1 || this.lowerOrderNums < 1 || (lower && i === n - 1)) {
        const h = f32(nt.lam - s0.lam);
        return tf.sub(tf.mul(f32(nt.a / s0.a), sample), tf.mul(f32(nt.s * f32(f32(Math.exp(h)) - 1)), converted));
      }
      const rho = (p: DpmNode): number => f32(p.s / p.a);
      const [rt, r0, r1] = [rho(nt), rho(s0), rho(vpNode(this.sigmas[i - 1]))];
      const base = tf.div(sample, s0.a);
      if (order === 2 || this.lowerOrderNums < 2 || (lower && i === n - 2)) {
        const c1 = f32(ind2(rt, r0, r1) - ind2(r0, r0, r1));
        const c2 = f32(ind2(rt, r1, r0) - ind2(r0, r1, r0));
        return tf.mul(nt.a, tf.add(tf.add(base, tf.mul(c1, m[order - 1]!)), tf.mul(c2, m[order - 2]!)));
      }
      const r2 = rho(vpNode(this.sigmas[i - 2]));
      const c1 = f32(ind3(rt, r0, r1, r2) - ind3(r0, r0, r1, r2));
      const c2 = f32(ind3(rt, r1, r2, r0) - ind3(r0, r1, r2, r0));
      const c3 = f32(ind3(rt, r2, r0, r1) - ind3(r0, r2, r0, r1));
      const sum = tf.add(tf.add(tf.add(base, tf.mul(c1, m[2]!)), tf.mul(c2, m[1]!)), tf.mul(c3, m[0]!));
      return tf.mul(nt.a, sum);
    });
    if (this.lowerOrderNums < order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample };
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseVp(original, noise, timesteps, this.sigmas);
  }
}
