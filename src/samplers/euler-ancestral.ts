/** EulerAncestralDiscreteScheduler (diffusers v0.30.3): Euler step to σ_down plus fresh noise of size σ_up. */
import * as tf from '@tensorflow/tfjs-core';
import { TRAINING_DEFAULTS, type StepOptions, type StepOutput } from './base.js';
import { predictX0, SigmaScheduler } from './euler.js';
import { f32 } from './schedule.js';
import { rule } from '../io/config.js';

export const EULER_ANCESTRAL_DEFAULTS: Record<string, unknown> = {
  ...TRAINING_DEFAULTS,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

/** Ancestral Euler sampler (k-diffusion `sample_euler_ancestral`, η = 1). */
export class EulerAncestralDiscreteScheduler extends SigmaScheduler {
  constructor(config: Record<string, unknown> = {}) {
    super('EulerAncestralDiscreteScheduler', EULER_ANCESTRAL_DEFAULTS, config, [['rescale_betas_zero_snr', rule.bool()]]);
    if (this.config.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
  }

  protected override predictionTypes(): readonly string[] {
    return ['epsilon', 'v_prediction'];
  }

  /** This class has no Karras or final-sigma options in v0.30.3: linear interpolation and a final 0. */
  protected scheduleOptions(): { config: Record<string, unknown>; karras: boolean } {
    return { config: { ...this.config, final_sigmas_type: 'zero' }, karras: false };
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput {
    const i = this.currentStepIndex(t);
    const from = this.sigmas[i];
    const to = this.sigmas[i + 1];
    const from2 = f32(from * from);
    const to2 = f32(to * to);
    const up = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const down = f32(Math.sqrt(f32(to2 - f32(up * up))));
    const dt = f32(down - from);
    const out = tf.tidy(() => {
      const x0 = predictX0(this.config.prediction_type, modelOutput, sample, from);
      const derivative = tf.div(tf.sub(sample, x0), from);
      const prev = tf.add(sample, tf.mul(derivative, dt));
      const noise = this.drawNoise(modelOutput.shape, opts);
      return { prevSample: tf.add(prev, tf.mul(noise, up)), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }
}
