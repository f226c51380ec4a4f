/** EulerDiscreteScheduler (diffusers v0.30.3): k-diffusion's Euler sampler on the discrete VP schedule. */
import * as tf from '@tensorflow/tfjs-core';
import { TRAINING_DEFAULTS, IndexedScheduler, type StepOptions, type StepOutput } from './base.js';
import {
  f32, interpUnitGrid, karrasSigmas, logF32, npArange, npLinspace, roundHalfEven, sigmaToT, sigmasFromAlphasCumprod,
} from './schedule.js';
import { rule } from '../io/config.js';

export const EULER_DEFAULTS: Record<string, unknown> = {
  ...TRAINING_DEFAULTS,
  prediction_type: 'epsilon',
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  sigma_min: null,
  sigma_max: null,
  timestep_spacing: 'linspace',
  timestep_type: 'discrete',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: 'zero',
};

/** Timesteps (float32 values) and sigmas (float32, with the final sigma appended) of a sigma-based sampler. */
export function sigmaSchedule(
  cfg: Record<string, unknown>, ac: Float32Array, n: number, karras: boolean,
): { timesteps: number[]; sigmas: number[] } {
  const T = Number(cfg.num_train_timesteps);
  const spacing = cfg.timestep_spacing;
  let ts: number[];
  if (spacing === 'linspace') ts = npLinspace(0, T - 1, n).reverse();
  else if (spacing === 'leading') {
    const ratio = Math.floor(T / n);
    ts = npArange(0, n).map((i) => roundHalfEven(i * ratio) + Number(cfg.steps_offset)).reverse();
  } else ts = npArange(T, 0, -T / n).map((v) => roundHalfEven(v) - 1);
  ts = ts.map(f32); // numpy casts the timesteps to float32 before interpolating
  const table = sigmasFromAlphasCumprod(ac);
  let sig = ts.map((t) => interpUnitGrid(t, table));
  if (karras) {
    const sMin = cfg.sigma_min != null ? Number(cfg.sigma_min) : sig[sig.length - 1];
    const sMax = cfg.sigma_max != null ? Number(cfg.sigma_max) : sig[0];
    sig = karrasSigmas(sMin, sMax, n);
    const logSig = logF32(table);
    ts = sig.map((s) => f32(sigmaToT(s, logSig)));
  }
  const last = cfg.final_sigmas_type === 'sigma_min' ? table[0] : 0;
  return { timesteps: ts, sigmas: [...sig, last].map(f32) };
}

/** sqrt(σ² + 1) in float32, the input scaling of the sigma-based samplers. */
export const inputScale = (sigma: number): number => f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));

/** What the Euler samplers share: the sigma schedule, the initial noise scale and the input scaling. */
export abstract class SigmaScheduler extends IndexedScheduler {
  sigmas: number[] = [];

  /** The config and Karras flag the schedule is built from (subclasses pin options they lack). */
  protected abstract scheduleOptions(): { config: Record<string, unknown>; karras: boolean };

  setTimesteps(n: number): void {
    this.checkSteps(n);
    this.startRun();
    this.numInferenceSteps = n;
    const { config, karras } = this.scheduleOptions();
    const { timesteps, sigmas } = sigmaSchedule(config, this.alphasCumprod, n, karras);
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    const maxSigma = Math.max(...sigmas);
    const sp = this.config.timestep_spacing;
    this.initNoiseSigma = sp === 'linspace' || sp === 'trailing' ? maxSigma : inputScale(maxSigma);
  }

  override scaleModelInput(x: tf.Tensor, t: number): tf.Tensor {
    return tf.div(x, inputScale(this.sigmas[this.currentStepIndex(t)]));
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseSigma(original, noise, timesteps, this.sigmas);
  }
}

/** Euler method for the probability-flow ODE (Karras et al. 2022, Alg. 2 without churn). */
export class EulerDiscreteScheduler extends SigmaScheduler {
  constructor(config: Record<string, unknown> = {}) {
    super('EulerDiscreteScheduler', EULER_DEFAULTS, config, [
      ['interpolation_type', rule.oneOf(['linear'])], ['timestep_type', rule.oneOf(['discrete'])], ['final_sigmas_type', rule.oneOf(['zero', 'sigma_min'])],
      ['use_karras_sigmas', rule.bool()], ['rescale_betas_zero_snr', rule.bool()],
    ]);
    const c = this.config;
    // Zero terminal SNR makes the first sigma infinite; diffusers nudges it to the fp16 epsilon.
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
  }

  protected scheduleOptions(): { config: Record<string, unknown>; karras: boolean } {
    return { config: this.config, karras: this.config.use_karras_sigmas === true };
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    const i = this.currentStepIndex(t);
    const sigma = this.sigmas[i];
    const dt = f32(this.sigmas[i + 1] - sigma);
    const out = tf.tidy(() => {
      const x0 = predictX0(this.config.prediction_type, modelOutput, sample, sigma);
      const derivative = tf.div(tf.sub(sample, x0), sigma);
      const prev = tf.add(sample, tf.mul(derivative, dt));
      return { prevSample: prev, predOriginalSample: x0 === modelOutput ? tf.clone(x0) : x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }
}

/** x̂₀ from the model output at noise level σ (k-diffusion parameterisation of ε, v and x₀ predictions). */
export function predictX0(predictionType: unknown, modelOutput: tf.Tensor, sample: tf.Tensor, sigma: number): tf.Tensor {
  if (predictionType === 'epsilon') return tf.sub(sample, tf.mul(sigma, modelOutput));
  if (predictionType === 'v_prediction') {
    const s2p1 = f32(f32(sigma * sigma) + 1);
    const c = f32(-sigma / f32(Math.sqrt(s2p1)));
    return tf.add(tf.mul(modelOutput, c), tf.div(sample, s2p1));
  }
  return modelOutput;
}
