/** EDMEulerScheduler (diffusers v0.30.3): Euler on the EDM sigma schedule with EDM preconditioning. */
import * as tf from '@tensorflow/tfjs-core';
import { IndexedScheduler, type StepOptions, type StepOutput } from './base.js';
import {
  EDM_DEFAULTS, EDM_RULES, edmInitNoiseSigma, edmInputScale, edmPreconditionOutputs, edmSigmas, edmTimestep,
} from './edm.js';
import { f32 } from './schedule.js';

/**
 * Karras et al. (2022) Algorithm 2 without churn (diffusers' defaults s_churn = 0): the denoiser is called at
 * c_noise(σ) on c_in·x and its output preconditioned to x̂₀. diffusers draws (and discards) a noise tensor every
 * step; no draw is made here, which changes nothing but the state of a generator no one reads after the loop.
 */
export class EDMEulerScheduler extends IndexedScheduler {
  sigmas: number[] = [];

  constructor(config: Record<string, unknown> = {}) {
    super('EDMEulerScheduler', EDM_DEFAULTS, config, EDM_RULES);
    this.initNoiseSigma = edmInitNoiseSigma(this.config);
  }

  protected override predictionTypes(): readonly string[] {
    return ['epsilon', 'v_prediction'];
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    this.startRun();
    const sigmas = edmSigmas(this.config, n);
    this.numInferenceSteps = n;
    this.timesteps = sigmas.map(edmTimestep);
    this.sigmas = [...sigmas, 0];
  }

  override scaleModelInput(x: tf.Tensor, t: number): tf.Tensor {
    return tf.mul(x, edmInputScale(this.sigmas[this.currentStepIndex(t)], this.num('sigma_data')));
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    const i = this.currentStepIndex(t);
    const sigma = this.sigmas[i];
    const dt = f32(this.sigmas[i + 1] - sigma);
    const out = tf.tidy(() => {
      const x0 = edmPreconditionOutputs(sample, modelOutput, sigma, this.num('sigma_data'), this.config.prediction_type);
      const derivative = tf.div(tf.sub(sample, x0), sigma);
      return { prevSample: tf.add(sample, tf.mul(derivative, dt)), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseSigma(original, noise, timesteps, this.sigmas);
  }
}
