/** LCMScheduler (diffusers v0.30.3): latent consistency model multistep sampling. */
import * as tf from '@tensorflow/tfjs-core';
import { TRAINING_DEFAULTS, THRESHOLDING_DEFAULTS, IndexedScheduler, type StepOptions, type StepOutput } from './base.js';
import { clipOrThreshold } from './ddim.js';
import { f32, npLinspace } from './schedule.js';
import { rule } from '../io/config.js';

export const LCM_DEFAULTS: Record<string, unknown> = {
  ...TRAINING_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  ...THRESHOLDING_DEFAULTS,
  timestep_spacing: 'leading',
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};

/** Consistency-model sampler (arXiv 2310.04378): denoise with boundary-condition scalings, then re-noise. */
export class LCMScheduler extends IndexedScheduler {
  readonly finalAlphaCumprod: number;
  /** σ_data of the consistency-model boundary condition. */
  readonly sigmaData = 0.5;

  constructor(config: Record<string, unknown> = {}) {
    super('LCMScheduler', LCM_DEFAULTS, config, [
      ['original_inference_steps', rule.int(1, 100_000)], ['clip_sample', rule.bool()],
      ['clip_sample_range', rule.number({ min: 0 })], ['set_alpha_to_one', rule.bool()], ['timestep_scaling', rule.number({ min: 0 })],
      ['rescale_betas_zero_snr', rule.bool()],
    ]);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /**
   * LCM timesteps: the distillation skips (every T/original_inference_steps-th training step) subsampled evenly.
   * @param originalInferenceSteps overrides `config.original_inference_steps` for this run.
   */
  setTimesteps(n: number, originalInferenceSteps?: number): void {
    this.checkSteps(n);
    this.startRun();
    const T = this.num('num_train_timesteps');
    const orig = originalInferenceSteps ?? this.num('original_inference_steps');
    if (orig > T) throw new Error(`LCMScheduler: original_inference_steps=${orig} cannot be larger than num_train_timesteps=${T}`);
    if (n > orig) throw new Error(`LCMScheduler: num_inference_steps=${n} cannot be larger than original_inference_steps=${orig}`);
    const k = Math.floor(T / orig);
    const origin: number[] = [];
    for (let i = orig; i >= 1; i--) origin.push(i * k - 1); // already reversed (descending)
    if (Math.floor(origin.length / n) < 1) throw new Error(`LCMScheduler: num_inference_steps=${n} is too large for original_inference_steps=${orig}`);
    this.timesteps = npLinspace(0, origin.length, n, false).map((v) => origin[Math.floor(v)]);
    this.numInferenceSteps = n;
  }

  /** c_skip, c_out of the boundary condition at timestep t (float32, as the torch tensors they are). */
  scalingsForBoundaryCondition(t: number): [number, number] {
    const st = f32(t * this.num('timestep_scaling'));
    const sd2 = f32(this.sigmaData * this.sigmaData);
    const den = f32(f32(st * st) + sd2);
    return [f32(sd2 / den), f32(st / f32(Math.sqrt(den)))];
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    const i = this.currentStepIndex(t);
    const prevT = i + 1 < this.timesteps.length ? this.timesteps[i + 1] : t;
    const aT = this.alphasCumprod[t];
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const sqA = f32(Math.sqrt(aT));
    const sqB = f32(Math.sqrt(f32(1 - aT)));
    const [cSkip, cOut] = this.scalingsForBoundaryCondition(t);
    const last = i === this.numInferenceSteps! - 1;
    const out = tf.tidy(() => {
      const pt = this.config.prediction_type;
      let x0: tf.Tensor;
      if (pt === 'epsilon') x0 = tf.div(tf.sub(sample, tf.mul(sqB, modelOutput)), sqA);
      else if (pt === 'v_prediction') x0 = tf.sub(tf.mul(sqA, sample), tf.mul(sqB, modelOutput));
      else x0 = modelOutput;
      x0 = clipOrThreshold(this.config, x0);
      const denoised = tf.add(tf.mul(cOut, x0), tf.mul(cSkip, sample));
      if (last) return { prevSample: denoised, denoised };
      const noise = this.drawNoise(modelOutput.shape, opts);
      const prev = tf.add(tf.mul(f32(Math.sqrt(aPrev)), denoised), tf.mul(f32(Math.sqrt(f32(1 - aPrev))), noise));
      return { prevSample: prev, denoised };
    });
    this.stepIndex = i + 1;
    return out;
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseAlphas(original, noise, timesteps);
  }
}
