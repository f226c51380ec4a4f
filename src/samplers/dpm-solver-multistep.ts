/** DPMSolverMultistepScheduler (diffusers v0.30.3): DPM-Solver(++) and its SDE variants, orders 1–3. */
import * as tf from '@tensorflow/tfjs-core';
import { SOLVER_DEFAULTS, IndexedScheduler, type ConfigRules, type StepOptions, type StepOutput } from './base.js';
import {
  firstOrderUpdate, scaledDiff, secondOrderUpdate, thirdOrderUpdate, vpNode, type DpmAlgorithm, type DpmNode,
} from './dpm-solver-updates.js';
import {
  alphaSigma, clippedSteps, configNumber, multistepSigmas, multistepTimesteps, withFinalSigma, type SigmaMode,
} from './multistep-schedule.js';
import { thresholdSample } from './threshold.js';
import { rule, type ConfigReader } from '../io/config.js';

export const DPM_DEFAULTS: Record<string, unknown> = {
  ...SOLVER_DEFAULTS,
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

/**
 * diffusers accepts the other solvers' names and rewrites them in the config (`register_to_config`), which is what
 * lets a DEIS or UniPC config be switched to DPM-Solver. Returns a rewritten copy of the passed config.
 */
export function withSolverAliases(config: Record<string, unknown>): Record<string, unknown> {
  const c = { ...config };
  if (c.algorithm_type === 'deis') c.algorithm_type = 'dpmsolver++';
  if (['logrho', 'bh1', 'bh2'].includes(c.solver_type as string)) c.solver_type = 'midpoint';
  return c;
}

/** Checks shared by the DPM-Solver family (multistep, EDM multistep, singlestep). */
export const DPM_RULES: ConfigRules = [
  ['solver_type', rule.oneOf(['midpoint', 'heun'])],
  ['final_sigmas_type', rule.oneOf(['zero', 'sigma_min'])],
  ['lower_order_final', rule.bool()],
  ['euler_at_final', rule.bool()],
  ['use_karras_sigmas', rule.bool()],
  // Python's json writes -inf as -Infinity; some tools write the string.
  ['lambda_min_clipped', rule.either(rule.number(), rule.oneOf([-Infinity, Infinity, '-inf', 'inf', '-Infinity', 'Infinity']))],
];

/**
 * The multistep DPM-Solver loop shared by the VP and EDM classes: the model-output history, diffusers' lower-order
 * warm-up and final steps, and the per-order updates. Subclasses give the schedule, the node of a sigma and the
 * conversion of the model output.
 */
export abstract class MultistepDpmBase extends IndexedScheduler {
  sigmas: number[] = [];
  /** Converted model outputs of the last `solver_order` steps (oldest first; owned by the scheduler). */
  private modelOutputs: (tf.Tensor | null)[] = [];
  private lowerOrderNums = 0;

  protected abstract node(sigma: number): DpmNode;
  /** The model output in the form the algorithm integrates (x̂₀ for ++, ε otherwise); a new tensor. */
  protected abstract convertModelOutput(modelOutput: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor;

  protected get algorithm(): DpmAlgorithm {
    return this.config.algorithm_type as DpmAlgorithm;
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.modelOutputs.filter((m): m is tf.Tensor => m !== null));
    this.modelOutputs = new Array<tf.Tensor | null>(Number(this.config.solver_order)).fill(null);
    this.lowerOrderNums = 0;
  }

  /** Builds a fresh run from float32 timesteps and sigmas (sigmas has the final one appended). */
  protected startSchedule(timesteps: number[], sigmas: number[]): void {
    this.startRun();
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.numInferenceSteps = timesteps.length;
  }

  override timestepNotFound(): number {
    return this.timesteps.length - 1;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    const i = this.currentStepIndex(t);
    const c = this.config;
    const n = this.timesteps.length;
    const order = Number(c.solver_order);
    const lowerFinal = i === n - 1 && (c.euler_at_final === true || (c.lower_order_final === true && n < 15) || c.final_sigmas_type === 'zero');
    const lowerSecond = i === n - 2 && c.lower_order_final === true && n < 15;
    const converted = tf.tidy(() => this.convertModelOutput(modelOutput, sample, i));
    this.modelOutputs.shift()?.dispose();
    this.modelOutputs.push(converted);
    const m = this.modelOutputs;
    const algo = this.algorithm;
    const noise = algo.startsWith('sde') ? this.drawNoise(modelOutput.shape, opts) : undefined;
    const [nt, s0] = [this.node(this.sigmas[i + 1]), this.node(this.sigmas[i])];
    const h = Math.fround(nt.lam - s0.lam);
    const prevSample = tf.tidy(() => {
      // h = 0 is a zero-length step (final_sigmas_type "sigma_min" can end on two sigmas whose float32 logs agree,
      // e.g. EDM's last Karras sigma and sigma_min): the higher-order terms are 0/0 there, and the first-order
      // update is both their limit and what diffusers' midpoint second order returns exactly. diffusers' own
      // vectorised log can differ from the correctly rounded one by an ulp and then gives finite noise instead.
      if (order === 1 || this.lowerOrderNums < 1 || lowerFinal || h === 0) return firstOrderUpdate(algo, nt, s0, converted, sample, noise);
      const s1 = this.node(this.sigmas[i - 1]);
      const r0 = Math.fround(Math.fround(s0.lam - s1.lam) / h);
      const [m0, m1] = [m[order - 1]!, m[order - 2]!];
      if (order === 2 || this.lowerOrderNums < 2 || lowerSecond) {
        return secondOrderUpdate(algo, String(c.solver_type), nt, s0, h, m0, scaledDiff(r0, m0, m1), sample, noise);
      }
      const s2 = this.node(this.sigmas[i - 2]);
      const r1 = Math.fround(Math.fround(s1.lam - s2.lam) / h);
      const d10 = scaledDiff(r0, m0, m1);
      const d11 = scaledDiff(r1, m1, m[0]!);
      const diff = tf.sub(d10, d11);
      const d1 = tf.add(d10, tf.mul(Math.fround(r0 / Math.fround(r0 + r1)), diff));
      const d2 = tf.mul(Math.fround(1 / Math.fround(r0 + r1)), diff);
      return thirdOrderUpdate(algo, nt, s0, h, m0, d1, d2, sample);
    });
    if (noise && noise !== opts?.noise) noise.dispose();
    if (this.lowerOrderNums < order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample };
  }
}

/** Multistep DPM-Solver (arXiv 2206.00927) and DPM-Solver++ (arXiv 2211.01095) on the discrete VP schedule. */
export class DPMSolverMultistepScheduler extends MultistepDpmBase {
  constructor(config: Record<string, unknown> = {}) {
    super('DPMSolverMultistepScheduler', DPM_DEFAULTS, withSolverAliases(config), [
      ...DPM_RULES,
      ['algorithm_type', rule.oneOf(['dpmsolver++', 'dpmsolver', 'sde-dpmsolver++', 'sde-dpmsolver'])],
      ['solver_order', rule.oneOf([1, 2, 3])],
      ['variance_type', rule.oneOf([null, 'learned', 'learned_range'])],
      ['use_lu_lambdas', rule.bool()],
      ['rescale_betas_zero_snr', rule.bool()],
    ]);
    checkDpmConfig(this.configReader());
    if (this.config.use_karras_sigmas === true && this.config.use_lu_lambdas === true) {
      throw this.configReader().fail('use_lu_lambdas', 'and use_karras_sigmas=true cannot both be true: choose one');
    }
    if (this.config.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    const c = this.config;
    const T = this.num('num_train_timesteps');
    const last = T - clippedSteps(this.alphasCumprod, configNumber(c.lambda_min_clipped));
    const ts = multistepTimesteps(c.timestep_spacing, T, last, n, this.num('steps_offset'));
    const mode: SigmaMode = c.use_karras_sigmas ? 'karras' : c.use_lu_lambdas ? 'lu' : 'interpolate';
    const { timesteps, sigmas, table } = multistepSigmas(c, this.alphasCumprod, ts, n, mode);
    this.startSchedule(timesteps, withFinalSigma(sigmas, c.final_sigmas_type === 'sigma_min' ? table[0] : 0));
  }

  protected node(sigma: number): DpmNode {
    return vpNode(sigma);
  }

  protected convertModelOutput(mo: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    return convertVpModelOutput(this.config, mo, sample, this.sigmas[i]);
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseVp(original, noise, timesteps, this.sigmas);
  }
}

/**
 * Combinations diffusers rejects (or would crash on), named with what to do instead. diffusers tests the
 * final-sigma rule on the algorithm name as passed, so a config carrying `algorithm_type: "deis"` (from
 * DEISMultistepScheduler) fails there with final_sigmas_type "zero"; we test it after the alias rewrite, so such
 * a config switches as its rewritten value says.
 */
export function checkDpmConfig(r: ConfigReader): void {
  const c = r.raw;
  const algo = c.algorithm_type as string;
  if (!algo.endsWith('++') && c.final_sigmas_type === 'zero') {
    throw r.fail('final_sigmas_type', `is not supported with algorithm_type=${JSON.stringify(algo)} (use final_sigmas_type "sigma_min")`);
  }
  if (algo.startsWith('sde') && Number(c.solver_order) === 3) {
    throw r.fail('algorithm_type', 'has no third-order update (use solver_order 1 or 2)');
  }
}

/**
 * The model output as the algorithm integrates it: x̂₀ for DPM-Solver++ (optionally dynamically thresholded), ε for
 * DPM-Solver (thresholding then goes through x̂₀ and back). Learned-variance outputs keep their first 3 channels.
 */
export function convertVpModelOutput(c: Record<string, unknown>, mo: tf.Tensor, sample: tf.Tensor, sigma: number): tf.Tensor {
  const [a, s] = alphaSigma(sigma);
  const pt = c.prediction_type;
  const threshold = (x0: tf.Tensor): tf.Tensor => thresholdSample(x0, Number(c.dynamic_thresholding_ratio), Number(c.sample_max_value));
  const out = pt === 'epsilon' && (c.variance_type === 'learned' || c.variance_type === 'learned_range')
    ? tf.slice(mo, [0, 0], [-1, 3]) : mo;
  if (String(c.algorithm_type).endsWith('++')) {
    let x0: tf.Tensor;
    if (pt === 'epsilon') x0 = tf.div(tf.sub(sample, tf.mul(s, out)), a);
    else if (pt === 'v_prediction') x0 = tf.sub(tf.mul(a, sample), tf.mul(s, out));
    else x0 = tf.clone(out);
    return c.thresholding ? threshold(x0) : x0;
  }
  let eps: tf.Tensor;
  if (pt === 'epsilon') eps = tf.clone(out);
  else if (pt === 'sample') eps = tf.div(tf.sub(sample, tf.mul(a, out)), s);
  else eps = tf.add(tf.mul(a, out), tf.mul(s, sample));
  if (!c.thresholding) return eps;
  const x0 = threshold(tf.div(tf.sub(sample, tf.mul(s, eps)), a));
  return tf.div(tf.sub(sample, tf.mul(a, x0)), s);
}
