/** PNDMScheduler (diffusers v0.30.3), PLMS path (`skip_prk_steps: true`, as every Stable Diffusion config ships). */
import * as tf from '@tensorflow/tfjs-core';
import { SchedulerBase, type StepOptions, type StepOutput } from './base.js';
import { ddimTimesteps } from './ddim.js';
import { f32 } from './schedule.js';

export const PNDM_DEFAULTS: Record<string, unknown> = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
};

/** Pseudo numerical methods for diffusion models (arXiv 2202.09778), linear multistep (PLMS) variant. */
export class PNDMScheduler extends SchedulerBase {
  readonly finalAlphaCumprod: number;
  /** Past model outputs (at most 4 kept; owned by the scheduler). */
  private ets: tf.Tensor[] = [];
  private curSample: tf.Tensor | null = null;
  private counter = 0;

  constructor(config: Record<string, unknown> = {}) {
    super('PNDMScheduler', PNDM_DEFAULTS, config);
    // Runge–Kutta warm-up (PRK) is not ported: diffusers' SD configs all skip it.
    if (this.config.skip_prk_steps !== true) {
      throw new Error(`PNDMScheduler: unsupported skip_prk_steps=${JSON.stringify(this.config.skip_prk_steps)} (only the PLMS path, skip_prk_steps=true, is implemented)`);
    }
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  protected override predictionTypes(): readonly string[] {
    return ['epsilon', 'v_prediction'];
  }

  setTimesteps(n: number): void {
    this.checkSteps(n);
    this.reset();
    this.numInferenceSteps = n;
    const T = this.num('num_train_timesteps');
    const asc = ddimTimesteps(String(this.config.timestep_spacing), T, n, this.num('steps_offset')).reverse();
    // PLMS repeats the second-to-last (ascending) timestep: its first step is a 2-evaluation warm-up.
    const plms = [...asc.slice(0, -1), ...asc.slice(-2, -1), ...asc.slice(-1)];
    this.timesteps = plms.reverse();
  }

  override reset(): void {
    super.reset();
    tf.dispose(this.ets);
    this.ets = [];
    this.curSample?.dispose();
    this.curSample = null;
    this.counter = 0;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor, _opts?: StepOptions): StepOutput {
    if (this.numInferenceSteps === null) throw new Error('PNDMScheduler: call setTimesteps before step');
    const ratio = Math.floor(this.num('num_train_timesteps') / this.numInferenceSteps);
    let timestep = t;
    let prevT = t - ratio;
    if (this.counter !== 1) {
      const dropped = this.ets.splice(0, Math.max(0, this.ets.length - 3));
      tf.dispose(dropped);
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
    const aT = this.alphasCumprod[t];
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
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

  override dispose(): void {
    this.reset();
  }
}
