/** DPMSolverSinglestepScheduler (diffusers v0.30.3): singlestep DPM-Solver(++) of orders 1–3. */
import * as tf from '@tensorflow/tfjs-core';
import { SOLVER_DEFAULTS, IndexedScheduler, type StepOptions, type StepOutput } from './base.js';
import { checkDpmConfig, convertVpModelOutput, DPM_RULES, withSolverAliases } from './dpm-solver-multistep.js';
import {
  firstOrderUpdate, scaledDiff, secondOrderUpdate, thirdOrderUpdate, vpNode, type DpmAlgorithm,
} from './dpm-solver-updates.js';
import { clippedSteps, configNumber, multistepSigmas, withFinalSigma } from './multistep-schedule.js';
import { f32, npLinspace, roundHalfEven } from './schedule.js';
import { rule } from '../io/config.js';

export const DPM_SINGLE_DEFAULTS: Record<string, unknown> = {
  ...SOLVER_DEFAULTS,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: false,
  use_karras_sigmas: false,
  final_sigmas_type: 'zero',
  lambda_min_clipped: -Infinity,
  variance_type: null,
};

/** diffusers `get_order_list`: the order of each step; singlestep groups of 1, 2(, 3) evaluations. */
export function singlestepOrders(steps: number, order: number, lowerOrderFinal: boolean): number[] {
  const rep = (pattern: number[], k: number): number[] => Array.from({ length: Math.max(0, k) }, () => pattern).flat();
  if (order === 1) return new Array<number>(steps).fill(1);
  if (!lowerOrderFinal) return order === 3 ? rep([1, 2, 3], Math.floor(steps / 3)) : rep([1, 2], Math.floor(steps / 2));
  if (order === 3) {
    const k = Math.floor(steps / 3);
    if (steps % 3 === 0) return [...rep([1, 2, 3], k - 1), 1, 2, 1];
    return steps % 3 === 1 ? [...rep([1, 2, 3], k), 1] : [...rep([1, 2, 3], k), 1, 2];
  }
  return steps % 2 === 0 ? [...rep([1, 2], steps / 2 - 1), 1, 1] : [...rep([1, 2], Math.floor(steps / 2)), 1];
}

/**
 * Singlestep DPM-Solver (arXiv 2206.00927 / 2211.01095): each group of k steps restarts from the sample at its
 * first step and takes one k-th order step to the group's end, using the model outputs of the steps in between.
 *
 * diffusers quirks kept: `set_timesteps` switches `lower_order_final` on in the config when final_sigmas_type is
 * "zero" or N is not a multiple of solver_order; the timesteps always use linspace spacing (timestep_spacing and
 * steps_offset are not options of this class). NaN trap rejected: with solver_order 3 and a final sigma of 0,
 * N % 3 == 2 ends on a second-order step onto σ = 0, which gives non-finite latents in diffusers 0.30.3
 * (r0 = h0/h = 0); setTimesteps throws for those N instead of returning a broken image.
 */
export class DPMSolverSinglestepScheduler extends IndexedScheduler {
  sigmas: number[] = [];
  /** Order of each step of the current run. */
  orderList: number[] = [];
  private modelOutputs: (tf.Tensor | null)[] = [];
  /** The sample at the start of the current group (owned). */
  private groupSample: tf.Tensor | null = null;

  constructor(config: Record<string, unknown> = {}) {
    super('DPMSolverSinglestepScheduler', DPM_SINGLE_DEFAULTS, withSolverAliases(config), [
      ...DPM_RULES,
      ['algorithm_type', rule.oneOf(['dpmsolver++', 'dpmsolver', 'sde-dpmsolver++'])],
      ['solver_order', rule.oneOf([1, 2, 3])],
      ['variance_type', rule.oneOf([null, 'learned', 'learned_range'])],
    ]);
    checkDpmConfig(this.configReader());
    if (this.config.thresholding && this.config.algorithm_type === 'dpmsolver') {
      // diffusers indexes its α/σ tables with a timestep it no longer has there (None): not a usable path.
      throw this.configReader().fail('thresholding', 'is not supported with algorithm_type "dpmsolver" (use "dpmsolver++")');
    }
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    const c = this.config;
    const T = this.num('num_train_timesteps');
    const clipped = clippedSteps(this.alphasCumprod, configNumber(c.lambda_min_clipped));
    const ts = npLinspace(0, T - 1 - clipped, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    const order = Number(c.solver_order);
    const lowerFinal = c.lower_order_final === true || n % order !== 0 || c.final_sigmas_type === 'zero';
    const orders = singlestepOrders(n, order, lowerFinal);
    if (c.final_sigmas_type === 'zero' && orders[orders.length - 1] > 1) {
      throw new Error(`${this.cls}: solver_order=${order} with final_sigmas_type "zero" and num_inference_steps=${n} ends on an order-${orders[orders.length - 1]} step onto sigma 0, which diffusers 0.30.3 turns into NaN/inf; use final_sigmas_type "sigma_min" or another step count (N % 3 != 2)`);
    }
    const { timesteps, sigmas, table } = multistepSigmas(c, this.alphasCumprod, ts, n, c.use_karras_sigmas ? 'karras' : 'interpolate');
    if (lowerFinal) c.lower_order_final = true; // diffusers' register_to_config in set_timesteps
    this.startRun();
    this.timesteps = timesteps;
    this.sigmas = withFinalSigma(sigmas, c.final_sigmas_type === 'sigma_min' ? table[0] : 0);
    this.orderList = orders;
    this.numInferenceSteps = n;
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.modelOutputs.filter((m): m is tf.Tensor => m !== null));
    this.modelOutputs = new Array<tf.Tensor | null>(Number(this.config.solver_order)).fill(null);
    this.groupSample?.dispose();
    this.groupSample = null;
  }

  override timestepNotFound(): number {
    return this.timesteps.length - 1;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    const i = this.currentStepIndex(t);
    const converted = tf.tidy(() => convertVpModelOutput(this.config, modelOutput, sample, this.sigmas[i]));
    this.modelOutputs.shift()?.dispose();
    this.modelOutputs.push(converted);
    const m = this.modelOutputs;
    const algo = this.config.algorithm_type as DpmAlgorithm;
    const noise = algo === 'sde-dpmsolver++' ? this.drawNoise(modelOutput.shape, opts) : undefined;
    // A run started mid-schedule (img2img) lacks history: fall back to the orders it has.
    let order = this.orderList[i];
    while (m[m.length - order] === null) order--;
    if (order === 1) {
      this.groupSample?.dispose();
      this.groupSample = tf.keep(tf.clone(sample));
    }
    if (!this.groupSample) throw new Error(`${this.cls}: a higher-order step needs the group's first step to have run`);
    const x = this.groupSample;
    const nt = vpNode(this.sigmas[i + 1]);
    const solverType = String(this.config.solver_type);
    const prevSample = tf.tidy(() => {
      const m0 = m[m.length - 1]!;
      if (order === 1) return firstOrderUpdate(algo, nt, vpNode(this.sigmas[i]), m0, x, noise);
      const [s0, s1] = [vpNode(this.sigmas[i]), vpNode(this.sigmas[i - 1])];
      const m1 = m[m.length - 2]!;
      if (order === 2) {
        const h = f32(nt.lam - s1.lam);
        const r0 = f32(f32(s0.lam - s1.lam) / h);
        return secondOrderUpdate(algo, solverType, nt, s1, h, m1, scaledDiff(r0, m0, m1), x, noise);
      }
      const s2 = vpNode(this.sigmas[i - 2]);
      const m2 = m[m.length - 3]!;
      const h = f32(nt.lam - s2.lam);
      const r0 = f32(f32(s0.lam - s2.lam) / h);
      const r1 = f32(f32(s1.lam - s2.lam) / h);
      const d10 = scaledDiff(r1, m1, m2);
      const d11 = scaledDiff(r0, m0, m2);
      // diffusers' "midpoint" third order uses D1_1 alone in the second-order (Heun-form) formula.
      if (solverType === 'midpoint') return secondOrderUpdate(algo, 'heun', nt, s2, h, m2, d11, x);
      const dr = f32(r0 - r1);
      const d1 = tf.div(tf.sub(tf.mul(r0, d10), tf.mul(r1, d11)), dr);
      const d2 = tf.div(tf.mul(2, tf.sub(d11, d10)), dr);
      return thirdOrderUpdate(algo, nt, s2, h, m2, d1, d2, x);
    });
    if (noise && noise !== opts?.noise) noise.dispose();
    this.stepIndex = i + 1;
    return { prevSample };
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseVp(original, noise, timesteps, this.sigmas);
  }
}
