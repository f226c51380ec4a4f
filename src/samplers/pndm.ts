/**
 * PNDMScheduler (diffusers v0.30.3): the Runge–Kutta warm-up (PRK, `skip_prk_steps: false`, SD-1.5's own config)
 * followed by the linear multistep method (PLMS), or PLMS alone (`skip_prk_steps: true`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { TRAINING_DEFAULTS, SchedulerBase, type StepOptions, type StepOutput } from './base.js';
import { ddimTimesteps } from './ddim.js';
import { f32 } from './schedule.js';
import { rule } from '../io/config.js';

export const PNDM_DEFAULTS: Record<string, unknown> = {
  ...TRAINING_DEFAULTS,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
};

/** Order of the pseudo linear multistep method (diffusers' `pndm_order`). */
const PNDM_ORDER = 4;

/**
 * Pseudo numerical methods for diffusion models (arXiv 2202.09778). With PRK the run has 4·3 Runge–Kutta model
 * evaluations on the first three intervals (the timestep table repeats them), then one PLMS step per interval:
 * `timesteps.length` = N + 9 for N inference steps, which the pipelines count as warm-up steps (order stays 1, as
 * in diffusers).
 */
export class PNDMScheduler extends SchedulerBase {
  readonly finalAlphaCumprod: number;
  /** Runge–Kutta part of `timesteps` (empty with skip_prk_steps). */
  prkTimesteps: number[] = [];
  /** Past model outputs (at most 4 kept; owned by the scheduler). */
  private ets: tf.Tensor[] = [];
  private curSample: tf.Tensor | null = null;
  /** Running RK4 combination of the current interval's model outputs (owned). */
  private curModelOutput: tf.Tensor | null = null;
  private counter = 0;

  constructor(config: Record<string, unknown> = {}) {
    super('PNDMScheduler', PNDM_DEFAULTS, config, [['skip_prk_steps', rule.bool()], ['set_alpha_to_one', rule.bool()]]);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  protected override predictionTypes(): readonly string[] {
    return ['epsilon', 'v_prediction'];
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    const T = this.num('num_train_timesteps');
    const asc = ddimTimesteps(String(this.config.timestep_spacing), T, n, this.num('steps_offset')).reverse();
    if (this.config.skip_prk_steps) {
      this.prkTimesteps = [];
      // PLMS repeats the second-to-last (ascending) timestep: its first step is a 2-evaluation warm-up.
      this.timesteps = [...asc.slice(0, -1), ...asc.slice(-2, -1), ...asc.slice(-1)].reverse();
    } else {
      if (n < PNDM_ORDER) throw new Error(`PNDMScheduler: the Runge–Kutta warm-up (skip_prk_steps=false) needs num_inference_steps ≥ ${PNDM_ORDER}, got ${n}`);
      // The last 4 timesteps, each followed by its interval midpoint; every point but the last is visited twice.
      const half = Math.floor(Math.floor(T / n) / 2);
      const points = asc.slice(-PNDM_ORDER).flatMap((t) => [t, t + half]).slice(0, -1);
      this.prkTimesteps = points.flatMap((t) => [t, t]).slice(1, -1).reverse();
      this.timesteps = [...this.prkTimesteps, ...asc.slice(0, -3).reverse()];
    }
    this.reset();
    this.numInferenceSteps = n;
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.ets);
    this.ets = [];
    this.curSample?.dispose();
    this.curSample = null;
    this.curModelOutput?.dispose();
    this.curModelOutput = null;
    this.counter = 0;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    this.requireTimesteps();
    if (this.counter < this.prkTimesteps.length) return this.stepPrk(modelOutput, t, sample);
    return this.stepPlms(modelOutput, t, sample);
  }

  /** One of the 4 evaluations of an RK4 interval: the state always restarts from the interval's first sample. */
  private stepPrk(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): StepOutput {
    const ratio = Math.floor(this.num('num_train_timesteps') / this.numInferenceSteps!);
    const prevT = t - (this.counter % 2 ? 0 : Math.floor(ratio / 2));
    const timestep = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const phase = this.counter % 4;
    let mo = modelOutput;
    if (phase === 0) {
      this.ets.push(tf.keep(tf.clone(modelOutput)));
      this.curSample?.dispose();
      this.curSample = tf.keep(tf.clone(sample));
    }
    if (phase < 3) {
      // RK4 weights 1/6, 1/3, 1/3 accumulate (float32 scalars, as torch casts them); the 4th closes with 1/6.
      const acc = tf.tidy(() => {
        const term = tf.mul(f32(phase === 0 ? 1 / 6 : 1 / 3), modelOutput);
        return this.curModelOutput ? tf.add(this.curModelOutput, term) : term;
      });
      this.curModelOutput?.dispose();
      this.curModelOutput = tf.keep(acc);
    } else {
      mo = tf.tidy(() => tf.add(this.curModelOutput!, tf.mul(f32(1 / 6), modelOutput)));
      this.curModelOutput!.dispose();
      this.curModelOutput = null;
    }
    const prevSample = tf.tidy(() => this.prevSampleFrom(this.curSample!, timestep, prevT, mo));
    if (mo !== modelOutput) mo.dispose();
    this.counter++;
    return { prevSample };
  }

  private stepPlms(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): StepOutput {
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new Error('PNDMScheduler: the linear multistep steps can only run after the 12 Runge–Kutta warm-up steps');
    }
    const ratio = Math.floor(this.num('num_train_timesteps') / this.numInferenceSteps!);
    let timestep = t;
    let prevT = t - ratio;
    if (this.counter !== 1) {
      tf.dispose(this.ets.splice(0, Math.max(0, this.ets.length - 3)));
      this.ets.push(tf.keep(tf.clone(modelOutput)));
    } else {
      prevT = t;
      timestep = t + ratio;
    }
    const ets = this.ets;
    const n = ets.length;
    const counter = this.counter;
    let newCur: tf.Tensor | null | undefined;
    const prevSample = tf.tidy(() => {
      let mo: tf.Tensor;
      let x = sample;
      if (n === 1 && counter === 0) {
        mo = modelOutput;
        newCur = tf.keep(tf.clone(sample));
      } else if (n === 1 && counter === 1) {
        mo = tf.div(tf.add(modelOutput, ets[n - 1]), 2);
        if (!this.curSample) throw new Error('PNDMScheduler: internal state lost');
        x = this.curSample;
        newCur = null;
      } else if (n === 2) {
        mo = tf.div(tf.sub(tf.mul(3, ets[n - 1]), ets[n - 2]), 2);
      } else if (n === 3) {
        mo = tf.div(tf.add(tf.sub(tf.mul(23, ets[n - 1]), tf.mul(16, ets[n - 2])), tf.mul(5, ets[n - 3])), 12);
      } else {
        const s = tf.sub(tf.add(tf.sub(tf.mul(55, ets[n - 1]), tf.mul(59, ets[n - 2])), tf.mul(37, ets[n - 3])), tf.mul(9, ets[n - 4]));
        mo = tf.mul(f32(1 / 24), s);
      }
      return this.prevSampleFrom(x, timestep, prevT, mo);
    });
    if (newCur !== undefined) {
      this.curSample?.dispose();
      this.curSample = newCur;
    }
    this.counter++;
    return { prevSample };
  }

  /** Eq. (9) of the PNDM paper: x_{t−δ} from x_t and the (combined) noise estimate. */
  private prevSampleFrom(sample: tf.Tensor, t: number, prevT: number, modelOutput: tf.Tensor): tf.Tensor {
    const ac = this.alphasCumprod;
    if (!(t >= 0 && t < ac.length && prevT < ac.length)) throw new Error(`PNDMScheduler: timestep ${t} → ${prevT} is outside the training schedule`);
    const aT = ac[t];
    const aPrev = prevT >= 0 ? ac[prevT] : this.finalAlphaCumprod;
    const bT = f32(1 - aT);
    const bPrev = f32(1 - aPrev);
    let mo = modelOutput;
    if (this.config.prediction_type === 'v_prediction') {
      mo = tf.add(tf.mul(f32(Math.sqrt(aT)), mo), tf.mul(f32(Math.sqrt(bT)), sample));
    }
    const sampleCoeff = f32(Math.sqrt(f32(aPrev / aT)));
    const denom = f32(f32(aT * f32(Math.sqrt(bPrev))) + f32(Math.sqrt(f32(f32(aT * bT) * aPrev))));
    return tf.sub(tf.mul(sampleCoeff, sample), tf.div(tf.mul(f32(aPrev - aT), mo), denom));
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: number | readonly number[]): tf.Tensor {
    return this.addNoiseAlphas(original, noise, timesteps);
  }
}
