/** EDMDPMSolverMultistepScheduler (diffusers v0.30.3): DPM-Solver++ on the EDM schedule (Playground v2.5's sampler). */
import * as tf from '@tensorflow/tfjs-core';
import { THRESHOLDING_DEFAULTS } from './base.js';
import { checkDpmConfig, DPM_RULES, MultistepDpmBase, withSolverAliases } from './dpm-solver-multistep.js';
import { edmNode, type DpmNode } from './dpm-solver-updates.js';
import {
  EDM_DEFAULTS, EDM_RULES, edmInitNoiseSigma, edmInputScale, edmPreconditionOutputs, edmSigmas, edmTimestep,
} from './edm.js';
import { f32 } from './schedule.js';
import { thresholdSample } from './threshold.js';
import { rule } from '../io/config.js';

export const EDM_DPM_DEFAULTS: Record<string, unknown> = {
  ...THRESHOLDING_DEFAULTS,
  ...EDM_DEFAULTS,
  solver_order: 2,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  final_sigmas_type: 'zero',
};

/**
 * Multistep DPM-Solver++ where the model input is pre-scaled by c_in, so α = 1 and σ is the EDM sigma; the model
 * output is preconditioned to x̂₀. Shares the multistep loop of DPMSolverMultistepScheduler; schedule, input
 * scaling and `add_noise` (x + σ·ε) are EDMEulerScheduler's.
 */
export class EDMDPMSolverMultistepScheduler extends MultistepDpmBase {
  constructor(config: Record<string, unknown> = {}) {
    super('EDMDPMSolverMultistepScheduler', EDM_DPM_DEFAULTS, withSolverAliases(config), [
      ...EDM_RULES,
      ...DPM_RULES,
      ['algorithm_type', rule.oneOf(['dpmsolver++', 'sde-dpmsolver++'])],
      ['solver_order', rule.oneOf([1, 2, 3])],
    ]);
    checkDpmConfig(this.configReader());
    this.initNoiseSigma = edmInitNoiseSigma(this.config);
  }

  protected override predictionTypes(): readonly string[] {
    return ['epsilon', 'v_prediction'];
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    const sigmas = edmSigmas(this.config, n);
    const last = this.config.final_sigmas_type === 'sigma_min' ? f32(this.num('sigma_min')) : 0;
    this.startSchedule(sigmas.map(edmTimestep), [...sigmas, last]);
  }

  protected node(sigma: number): DpmNode {
    return edmNode(sigma);
  }

  protected convertModelOutput(mo: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const c = this.config;
    const x0 = edmPreconditionOutputs(sample, mo, this.sigmas[i], this.num('sigma_data'), c.prediction_type);
    return c.thresholding ? thresholdSample(x0, Number(c.dynamic_thresholding_ratio), Number(c.sample_max_value)) : x0;
  }

  override scaleModelInput(x: tf.Tensor, t: number): tf.Tensor {
    return tf.mul(x, edmInputScale(this.sigmas[this.currentStepIndex(t)], this.num('sigma_data')));
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseSigma(original, noise, timesteps, this.sigmas);
  }
}
