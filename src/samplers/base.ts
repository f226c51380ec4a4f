/**
 * Shared scheduler plumbing: the public `Scheduler` interface, config resolution (diffusers `from_config`
 * semantics), the training noise schedule, step-index bookkeeping and noise drawing.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from './rng.js';
import type { NoiseSource } from './torch-generator.js';
import { alphasCumprod, makeBetas, type BetaConfig } from './schedule.js';

/** Per-call options of `step`. */
export interface StepOptions {
  /** Noise to use instead of drawing it (replays a recorded run exactly). Not disposed by the scheduler. */
  noise?: tf.Tensor;
  /** DDIM only: weight of the noise (η). Defaults to 0. */
  eta?: number;
  /** Generator for the noise when `noise` is not given; defaults to the scheduler's own seeded `Rng`. */
  generator?: NoiseSource;
}

/** What `step` returns; the caller owns (and disposes) these tensors. */
export interface StepOutput {
  prevSample: tf.Tensor;
  predOriginalSample?: tf.Tensor;
  denoised?: tf.Tensor;
}

/** The sampler interface every scheduler implements (mirrors the diffusers scheduler API). */
export interface Scheduler {
  /** Resolved config (defaults filled in) with `_class_name`. */
  readonly config: Record<string, unknown>;
  /** Timesteps of the current run (after `setTimesteps`). */
  timesteps: number[];
  /** Sigma table of the current run where diffusers has one (length timesteps + 1). */
  sigmas?: number[];
  /** Standard deviation of the initial latent noise. */
  initNoiseSigma: number;
  /** diffusers' `order` attribute (1 for all samplers here). */
  readonly order: number;
  /** Builds the timestep table for `n` inference steps and starts a fresh run. */
  setTimesteps(n: number): void;
  /** Scales the latents before the model call (identity except for the sigma-based samplers). */
  scaleModelInput(x: tf.Tensor, t: number): tf.Tensor;
  /** One denoising step from timestep `t`. */
  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput;
  /** Forgets per-run state (multistep history, step index) and frees the tensors it held. */
  reset(): void;
  /** Frees every tensor the scheduler holds. */
  dispose(): void;
}

/** Throws unless `value` is one of `allowed`; the message names the class, key and value. */
export function checkOneOf(cls: string, key: string, value: unknown, allowed: readonly unknown[]): void {
  if (!allowed.includes(value)) {
    throw new Error(`${cls}: unsupported ${key}=${JSON.stringify(value)} (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
  }
}

/**
 * diffusers `from_config`: keys the class knows override its defaults; unknown keys are ignored for behaviour but
 * kept in `config` (diffusers keeps them too); private `_…` keys are dropped and `_class_name` is set.
 */
export function resolveConfig(cls: string, defaults: Record<string, unknown>, passed: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { _class_name: cls, ...defaults };
  for (const [k, v] of Object.entries(passed)) {
    if (!k.startsWith('_')) out[k] = v;
  }
  return out;
}

/** Base class: config, training schedule, the default noise generator and step-index helpers. */
export abstract class SchedulerBase implements Scheduler {
  readonly config: Record<string, unknown>;
  readonly order = 1;
  timesteps: number[] = [];
  initNoiseSigma = 1;
  numInferenceSteps: number | null = null;
  /** float32 alphas_cumprod of the training schedule. */
  readonly alphasCumprod: Float32Array;
  /** Generator used when neither `noise` nor `generator` is passed to `step`. */
  rng = new Rng(0);
  protected stepIndex: number | null = null;

  protected constructor(cls: string, defaults: Record<string, unknown>, passed: Record<string, unknown>) {
    this.config = resolveConfig(cls, defaults, passed);
    const c = this.config;
    checkOneOf(cls, 'thresholding', c.thresholding ?? false, [false]);
    if (c.trained_betas == null) checkOneOf(cls, 'beta_schedule', c.beta_schedule, ['linear', 'scaled_linear', 'squaredcos_cap_v2']);
    if ('prediction_type' in defaults) checkOneOf(cls, 'prediction_type', c.prediction_type, this.predictionTypes());
    if ('timestep_spacing' in defaults) checkOneOf(cls, 'timestep_spacing', c.timestep_spacing, ['leading', 'trailing', 'linspace']);
    this.alphasCumprod = alphasCumprod(makeBetas(c as unknown as BetaConfig));
  }

  /** Prediction types this sampler supports. */
  protected predictionTypes(): readonly string[] {
    return ['epsilon', 'v_prediction', 'sample'];
  }

  protected get cls(): string {
    return this.config._class_name as string;
  }

  protected num(key: string): number {
    return Number(this.config[key]);
  }

  abstract setTimesteps(n: number): void;
  abstract step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput;

  scaleModelInput(x: tf.Tensor, _t: number): tf.Tensor {
    return x;
  }

  /** diffusers `index_for_timestep`: the second match when a timestep repeats, so img2img starts are not skipped. */
  protected indexForTimestep(t: number): number {
    const idx: number[] = [];
    this.timesteps.forEach((v, i) => {
      if (v === t) idx.push(i);
    });
    if (idx.length === 0) throw new Error(`${this.cls}: timestep ${t} is not in the current schedule`);
    return idx.length > 1 ? idx[1] : idx[0];
  }

  /** Step index of the current call, initialised from `t` on the first step of a run. */
  protected currentStepIndex(t: number): number {
    if (this.stepIndex === null) this.stepIndex = this.indexForTimestep(t);
    return this.stepIndex;
  }

  protected checkSteps(n: number): void {
    const T = this.num('num_train_timesteps');
    if (!Number.isInteger(n) || n < 1) throw new Error(`${this.cls}: num_inference_steps must be a positive integer, got ${n}`);
    if (n > T) throw new Error(`${this.cls}: num_inference_steps=${n} cannot be larger than num_train_timesteps=${T}`);
  }

  /** The injected noise, else a draw from the given or the default generator. */
  protected drawNoise(shape: number[], opts?: StepOptions): tf.Tensor {
    if (opts?.noise) return opts.noise;
    return (opts?.generator ?? this.rng).randn(shape);
  }

  reset(): void {
    this.stepIndex = null;
  }

  dispose(): void {
    this.reset();
  }
}
