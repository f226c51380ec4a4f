/** DDIMScheduler (diffusers v0.30.3), including η > 0 and the `sample`/`v_prediction` parameterisations. */
import * as tf from '@tensorflow/tfjs-core';
import { TRAINING_DEFAULTS, THRESHOLDING_DEFAULTS, SchedulerBase, type StepOptions, type StepOutput } from './base.js';
import { f32, npArange, npLinspace, roundHalfEven } from './schedule.js';
import { thresholdSample } from './threshold.js';
import { rule } from '../io/config.js';

export const DDIM_DEFAULTS: Record<string, unknown> = {
  ...TRAINING_DEFAULTS,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  ...THRESHOLDING_DEFAULTS,
  clip_sample_range: 1.0,
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
};

/**
 * Integer timesteps shared by DDIM-style samplers (DDIM, PNDM): descending, spacing per Table 2 of
 * arXiv 2305.08891; `leading` adds `steps_offset`.
 */
export function ddimTimesteps(spacing: string, T: number, n: number, stepsOffset: number): number[] {
  if (spacing === 'linspace') return npLinspace(0, T - 1, n).map(roundHalfEven).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return npArange(0, n).map((i) => roundHalfEven(i * ratio) + stepsOffset).reverse();
  }
  // trailing
  return npArange(T, 0, -T / n).map((v) => roundHalfEven(v) - 1);
}

/** Denoising diffusion implicit models (arXiv 2010.02502). */
export class DDIMScheduler extends SchedulerBase {
  /** alphas_cumprod before the first training step (1, or alphas_cumprod[0]). */
  readonly finalAlphaCumprod: number;

  constructor(config: Record<string, unknown> = {}) {
    super('DDIMScheduler', DDIM_DEFAULTS, config, [
      ['clip_sample', rule.bool()], ['clip_sample_range', rule.number({ min: 0 })], ['set_alpha_to_one', rule.bool()],
      ['rescale_betas_zero_snr', rule.bool()],
    ]);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    this.reset();
    this.numInferenceSteps = n;
    this.timesteps = ddimTimesteps(String(this.config.timestep_spacing), this.num('num_train_timesteps'), n, this.num('steps_offset'));
  }

  /** (β̄_{t−1} / β̄_t)(1 − ᾱ_t / ᾱ_{t−1}), in float32 as in diffusers. */
  private variance(aT: number, aPrev: number): number {
    const bT = f32(1 - aT);
    const bPrev = f32(1 - aPrev);
    return f32(f32(bPrev / bT) * f32(1 - f32(aT / aPrev)));
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const eta = opts.eta ?? 0;
    const prevT = t - Math.floor(this.num('num_train_timesteps') / this.numInferenceSteps!);
    const aT = this.alphasCumprod[t];
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const bT = f32(1 - aT);
    const sqA = f32(Math.sqrt(aT));
    const sqB = f32(Math.sqrt(bT));
    const pt = this.config.prediction_type;
    const variance = this.variance(aT, aPrev);
    const std = f32(eta * f32(Math.sqrt(variance)));
    const dirCoef = f32(Math.sqrt(f32(f32(1 - aPrev) - f32(std * std))));
    const sqAPrev = f32(Math.sqrt(aPrev));
    return tf.tidy(() => {
      let x0: tf.Tensor;
      let eps: tf.Tensor;
      if (pt === 'epsilon') {
        x0 = tf.div(tf.sub(sample, tf.mul(sqB, modelOutput)), sqA);
        eps = modelOutput;
      } else if (pt === 'sample') {
        x0 = modelOutput;
        eps = tf.div(tf.sub(sample, tf.mul(sqA, x0)), sqB);
      } else {
        x0 = tf.sub(tf.mul(sqA, sample), tf.mul(sqB, modelOutput));
        eps = tf.add(tf.mul(sqA, modelOutput), tf.mul(sqB, sample));
      }
      x0 = clipOrThreshold(this.config, x0);
      let prev = tf.add(tf.mul(sqAPrev, x0), tf.mul(dirCoef, eps));
      if (eta > 0) prev = tf.add(prev, tf.mul(std, this.drawNoise(modelOutput.shape, opts)));
      // The caller owns the outputs; `x0` may alias the model output (prediction_type sample), so copy it.
      return { prevSample: prev, predOriginalSample: x0 === modelOutput ? tf.clone(x0) : x0 };
    });
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseAlphas(original, noise, timesteps);
  }
}

/** DDIM/LCM: dynamic thresholding of x̂₀ if configured, else clipping to ±clip_sample_range if configured. */
export function clipOrThreshold(c: Record<string, unknown>, x0: tf.Tensor): tf.Tensor {
  if (c.thresholding) return thresholdSample(x0, Number(c.dynamic_thresholding_ratio), Number(c.sample_max_value));
  if (!c.clip_sample) return x0;
  const r = Number(c.clip_sample_range);
  return tf.clipByValue(x0, -r, r);
}
