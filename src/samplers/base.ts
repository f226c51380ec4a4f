/**
 * Shared scheduler plumbing: the public `Scheduler` interface, config resolution (diffusers `from_config`
 * semantics), the training noise schedule, step/begin-index bookkeeping, `add_noise` and noise drawing.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from './rng.js';
import type { NoiseSource } from './torch-generator.js';
import { alphaSigma } from './multistep-schedule.js';
import { alphasCumprod, f32, makeBetas, type BetaConfig } from './schedule.js';
import { ConfigReader, rule, type Rule } from '../io/config.js';

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
  /** Resolved config (defaults filled in) with `_class_name` and diffusers' `_use_default_values`. */
  readonly config: Record<string, unknown>;
  /** Timesteps of the current run (after `setTimesteps`): integers, or floats for the EDM samplers. */
  timesteps: number[];
  /** Sigma table of the current run where diffusers has one (length timesteps + 1). */
  sigmas?: number[];
  /** Standard deviation of the initial latent noise. */
  initNoiseSigma: number;
  /** diffusers' `order` attribute (1 for every sampler here, as in diffusers v0.30.3). */
  readonly order: number;
  /** Builds the timestep table for `n` inference steps and starts a fresh run. */
  setTimesteps(n: number): void;
  /** Scales the latents before the model call (identity except for the sigma-based samplers). */
  scaleModelInput(x: tf.Tensor, t: number): tf.Tensor;
  /** One denoising step from timestep `t`. */
  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, opts?: StepOptions): StepOutput;
  /**
   * diffusers `add_noise`: `original` noised to the level of `timesteps` (one per batch row, or one for all rows).
   * Sigma-based samplers look the timesteps up in the current schedule, or ignore them once `setBeginIndex` was
   * called (then the begin index, or the current step index after a step, picks the level). Caller owns the result.
   */
  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor;
  /** diffusers `set_begin_index` (only on the classes that have it): the step index the next run starts at. */
  setBeginIndex?(beginIndex: number): void;
  /** Forgets per-run state (multistep history, step index) and frees the tensors it held. */
  reset(): void;
  /** Frees every tensor the scheduler holds. */
  dispose(): void;
}

/**
 * A table of config checks, `[key, rule]`, in the rules of the one config reader (io/config.ts). Only the keys a
 * class has among its defaults are checked: values another class left in the config do not concern this one.
 */
export type ConfigRules = readonly (readonly [string, Rule])[];

/** diffusers' defaults of the training beta schedule, shared by every class that has one. */
export const TRAINING_DEFAULTS: Record<string, unknown> = {
  num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', trained_betas: null,
};

/** Dynamic thresholding of x̂₀, off by default. */
export const THRESHOLDING_DEFAULTS: Record<string, unknown> = { thresholding: false, dynamic_thresholding_ratio: 0.995, sample_max_value: 1.0 };

/** The head the multistep solvers' defaults share (DPM-Solver, UniPC, DEIS). */
export const SOLVER_DEFAULTS: Record<string, unknown> = { ...TRAINING_DEFAULTS, solver_order: 2, prediction_type: 'epsilon', ...THRESHOLDING_DEFAULTS };

/** The largest training schedule accepted (diffusers models use 1000; this bounds the tables we allocate). */
export const MAX_TRAIN_TIMESTEPS = 100_000;

/** Rules every class with a training beta schedule shares. */
const TRAINING_RULES: ConfigRules = [
  ['num_train_timesteps', rule.int(2, MAX_TRAIN_TIMESTEPS)],
  ['beta_start', rule.number({ min: 0, max: 1 })],
  ['beta_end', rule.number({ min: 0, max: 1 })],
  ['steps_offset', rule.int(0, MAX_TRAIN_TIMESTEPS)],
  ['timestep_spacing', rule.oneOf(['leading', 'trailing', 'linspace'])],
  ['thresholding', rule.bool()],
  ['dynamic_thresholding_ratio', rule.number({ min: 0, max: 1 })],
  ['sample_max_value', rule.number({ min: 0 })],
];

/**
 * diffusers `from_config`: keys the class knows override its defaults, except those the source config lists in
 * `_use_default_values` (the source took its own default there, so this class takes its own too: that is what
 * makes a switch A → B → A land back on A). Other keys are ignored for behaviour but kept in `config`, as
 * diffusers keeps them; private `_…` keys are dropped, `_class_name` is set and `_use_default_values` lists the
 * keys this class took from its defaults.
 */
export function resolveConfig(cls: string, defaults: Record<string, unknown>, passed: Record<string, unknown>): Record<string, unknown> {
  const usedDefaults = Array.isArray(passed._use_default_values) ? passed._use_default_values : [];
  const given = Object.entries(passed).filter(([k]) => !k.startsWith('_') && !usedDefaults.includes(k));
  const out: Record<string, unknown> = { _class_name: cls, ...defaults };
  for (const [k, v] of given) out[k] = v;
  const givenKeys = new Set(given.map(([k]) => k));
  out._use_default_values = Object.keys(defaults).filter((k) => !givenKeys.has(k));
  return out;
}

/** One coefficient per batch row as a [k, 1, …, 1] tensor that broadcasts against a tensor of `rank`. */
function rowCoefficients(values: number[], rank: number): tf.Tensor {
  return tf.tensor(Float32Array.from(values), [values.length, ...new Array<number>(rank - 1).fill(1)]);
}

/** `a·x + b·y` with per-row coefficients, in diffusers' operation order (caller owns the result). */
export function rowAffine(x: tf.Tensor, a: number[] | null, y: tf.Tensor, b: number[]): tf.Tensor {
  return tf.tidy(() => {
    const ax = a === null ? x : tf.mul(rowCoefficients(a, x.rank), x);
    return tf.add(ax, tf.mul(y, rowCoefficients(b, y.rank)));
  });
}

/** Base class: config, training schedule, the default noise generator, step-index helpers and `add_noise`. */
export abstract class SchedulerBase implements Scheduler {
  readonly config: Record<string, unknown>;
  readonly order = 1;
  timesteps: number[] = [];
  initNoiseSigma = 1;
  numInferenceSteps: number | null = null;
  /** float32 alphas_cumprod of the training schedule (empty for the EDM samplers, which have none). */
  readonly alphasCumprod: Float32Array;
  /** Generator used when neither `noise` nor `generator` is passed to `step`. */
  rng = new Rng(0);
  protected stepIndex: number | null = null;
  /** Set by `setBeginIndex` on the classes that have it; cleared by `setTimesteps`. */
  protected beginIndex: number | null = null;

  /** @param rules checks of the class's own keys, run with the shared ones on the resolved config. */
  protected constructor(cls: string, defaults: Record<string, unknown>, passed: Record<string, unknown>, rules: ConfigRules = []) {
    ConfigReader.of(passed, cls);
    this.config = resolveConfig(cls, defaults, passed);
    const c = this.config;
    const r = this.configReader();
    const own = Object.keys(defaults);
    for (const [key, keyRule] of [...TRAINING_RULES, ...rules]) if (own.includes(key)) r.check(key, c[key], keyRule);
    if (own.includes('prediction_type')) r.check('prediction_type', c.prediction_type, rule.oneOf(this.predictionTypes()));
    if (own.includes('beta_schedule')) {
      const T = c.num_train_timesteps as number;
      // One beta per training step, each in [0, 1): a beta of 1 zeroes every later alpha.
      if (c.trained_betas != null) r.check('trained_betas', c.trained_betas, rule.list(rule.number({ min: 0, below: 1 }), T, T));
      else r.check('beta_schedule', c.beta_schedule, rule.oneOf(['linear', 'scaled_linear', 'squaredcos_cap_v2']));
      this.alphasCumprod = alphasCumprod(makeBetas(c as unknown as BetaConfig));
    } else this.alphasCumprod = new Float32Array(0);
  }

  /** The resolved config under the one config reader, for checks across keys (`configReader().fail(key, …)`). */
  protected configReader(): ConfigReader {
    return ConfigReader.of(this.config, this.config._class_name as string);
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
  abstract addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor;

  scaleModelInput(x: tf.Tensor, _t: number): tf.Tensor {
    return x;
  }

  /**
   * diffusers `index_for_timestep`: the second match when a timestep repeats, so img2img starts are not skipped.
   * A timestep outside the schedule is `timestepNotFound`'s call (an error here, the last index for the DPM family).
   */
  protected indexForTimestep(t: number): number {
    const idx: number[] = [];
    this.timesteps.forEach((v, i) => {
      if (v === t) idx.push(i);
    });
    if (idx.length === 0) return this.timestepNotFound(t);
    return idx.length > 1 ? idx[1] : idx[0];
  }

  protected timestepNotFound(t: number): number {
    throw new Error(`${this.cls}: timestep ${t} is not in the current schedule (call setTimesteps, then pass one of scheduler.timesteps)`);
  }

  /** Step index of the current call, initialised on the first step of a run from the begin index or from `t`. */
  protected currentStepIndex(t: number): number {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    if (this.stepIndex >= this.timesteps.length) {
      throw new Error(`${this.cls}: step ${this.stepIndex} is past the ${this.timesteps.length}-step schedule (setTimesteps starts a new run)`);
    }
    return this.stepIndex;
  }

  /** n ≥ 1, and at most num_train_timesteps where there is a training schedule (EDM has none to bound it). */
  protected checkSteps(n: number): void {
    const T = this.alphasCumprod.length > 0 ? this.num('num_train_timesteps') : MAX_TRAIN_TIMESTEPS;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${this.cls}: num_inference_steps must be a positive integer, got ${n}`);
    if (n > T) throw new Error(`${this.cls}: num_inference_steps=${n} cannot be larger than ${this.alphasCumprod.length > 0 ? 'num_train_timesteps=' : ''}${T}`);
  }

  protected requireTimesteps(): void {
    if (this.numInferenceSteps === null) throw new Error(`${this.cls}: call setTimesteps before step`);
  }

  /** Checks `add_noise` inputs and returns one timestep per row (a single timestep broadcasts to every row). */
  protected noiseTimesteps(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): number[] {
    if (original.rank < 1 || original.shape.join() !== noise.shape.join()) {
      throw new Error(`${this.cls}.addNoise: original ${JSON.stringify(original.shape)} and noise ${JSON.stringify(noise.shape)} must have the same shape`);
    }
    const ts = typeof timesteps === 'number' ? [timesteps] : [...timesteps];
    if (ts.length !== 1 && ts.length !== original.shape[0]) {
      throw new Error(`${this.cls}.addNoise: ${ts.length} timesteps for a batch of ${original.shape[0]} (pass one, or one per row)`);
    }
    return ts;
  }

  /** The alphas_cumprod rule (DDIM, PNDM, LCM): √ᾱ_t·x + √(1 − ᾱ_t)·ε with integer training timesteps t. */
  protected addNoiseAlphas(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    const ac = this.alphasCumprod;
    const ts = this.noiseTimesteps(original, noise, timesteps);
    for (const t of ts) {
      if (!Number.isInteger(t) || t < 0 || t >= ac.length) {
        throw new Error(`${this.cls}.addNoise: timestep ${t} must be an integer training timestep in 0…${ac.length - 1}`);
      }
    }
    return rowAffine(original, ts.map((t) => f32(Math.sqrt(ac[t]))), noise, ts.map((t) => f32(Math.sqrt(f32(1 - ac[t])))));
  }

  /**
   * Sigma indices of `add_noise` for the sigma-based samplers: per timestep before `setBeginIndex`; after it every
   * row takes the begin index, or the current step index once a step ran (diffusers' inpainting blend).
   */
  protected noiseSigmaIndices(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[], nSigmas: number): number[] {
    const ts = this.noiseTimesteps(original, noise, timesteps);
    if (nSigmas === 0) throw new Error(`${this.cls}.addNoise: call setTimesteps first`);
    const fixed = this.beginIndex === null ? null : this.stepIndex ?? this.beginIndex;
    const idx = ts.map((t) => fixed ?? this.indexForTimestep(t));
    for (const i of idx) if (i >= nSigmas) throw new Error(`${this.cls}.addNoise: step index ${i} is past the schedule (${nSigmas} sigmas)`);
    return idx;
  }

  /** diffusers' sigma-based `add_noise` (Euler and EDM samplers): x + σ·ε, σ picked by `noiseSigmaIndices`. */
  protected addNoiseSigma(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[], sigmas: number[]): tf.Tensor {
    const idx = this.noiseSigmaIndices(original, noise, timesteps, sigmas.length);
    return rowAffine(original, null, noise, idx.map((i) => sigmas[i]));
  }

  /** The VP rule of the DPM-Solver family, UniPC and DEIS: α_σ·x + σ_σ·ε for the sigma `noiseSigmaIndices` picks. */
  protected addNoiseVp(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[], sigmas: number[]): tf.Tensor {
    const as = this.noiseSigmaIndices(original, noise, timesteps, sigmas.length).map((i) => alphaSigma(sigmas[i]));
    return rowAffine(original, as.map((v) => v[0]), noise, as.map((v) => v[1]));
  }

  /** The injected noise, else a draw from the given or the default generator. */
  protected drawNoise(shape: number[], opts?: StepOptions): tf.Tensor {
    if (opts?.noise) {
      if (opts.noise.shape.join() !== shape.join()) {
        throw new Error(`${this.cls}: step noise has shape ${JSON.stringify(opts.noise.shape)}, expected ${JSON.stringify(shape)}`);
      }
      return opts.noise;
    }
    return (opts?.generator ?? this.rng).randn(shape);
  }

  reset(): void {
    this.stepIndex = null;
  }

  dispose(): void {
    this.reset();
  }
}

/** Samplers that have diffusers' `set_begin_index` (all but DDIM and PNDM). */
export abstract class IndexedScheduler extends SchedulerBase {
  /** diffusers `set_begin_index`: img2img pipelines call it with the first step they run. */
  setBeginIndex(beginIndex: number): void {
    if (!Number.isInteger(beginIndex) || beginIndex < 0) throw new Error(`${this.cls}: begin index must be a non-negative integer, got ${beginIndex}`);
    this.beginIndex = beginIndex;
  }

  /** A new schedule clears both indices, as diffusers' set_timesteps does. */
  protected startRun(): void {
    this.reset();
    this.beginIndex = null;
  }
}
