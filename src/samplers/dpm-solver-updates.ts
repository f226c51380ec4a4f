/**
 * The DPM-Solver update formulas (arXiv 2206.00927, 2211.01095) shared by the multistep, singlestep and EDM
 * solvers, in diffusers v0.30.3's operation order: every scalar coefficient is a float32 tensor op there, so each
 * is rounded with `f32` here before it multiplies a tensor.
 */
import * as tf from '@tensorflow/tfjs-core';
import { alphaSigma, lambdaOf } from './multistep-schedule.js';
import { f32 } from './schedule.js';

/** `dpmsolver`/`sde-dpmsolver` integrate the noise prediction, the `++` variants the data prediction. */
export type DpmAlgorithm = 'dpmsolver++' | 'dpmsolver' | 'sde-dpmsolver++' | 'sde-dpmsolver';

/** α, σ and λ = log α − log σ at one point of the schedule. */
export interface DpmNode { a: number; s: number; lam: number }

/** A node of the VP schedule from its k-diffusion sigma. */
export function vpNode(sigma: number): DpmNode {
  const [a, s] = alphaSigma(sigma);
  return { a, s, lam: lambdaOf(a, s) };
}

/** A node of the EDM schedule: inputs are pre-scaled, so α = 1 and σ is the sigma itself. */
export function edmNode(sigma: number): DpmNode {
  return { a: 1, s: sigma, lam: f32(0 - f32(Math.log(sigma))) };
}

const exp32 = (x: number): number => f32(Math.exp(x));

/** The scalar weights shared by the update forms for a step of size h from `base` to `t`. */
function weights(t: DpmNode, base: DpmNode, h: number) {
  const emh = f32(exp32(-h) - 1); // e^{−h} − 1
  const eph = f32(exp32(h) - 1); // e^{h} − 1
  const e2 = f32(1 - exp32(f32(-2 * h))); // 1 − e^{−2h}
  return { emh, eph, e2, sOverS: f32(t.s / base.s), aOverA: f32(t.a / base.a) };
}

/** The stochastic term of the SDE variants: σ_t·√(1 − e^{−2h})·z (++), σ_t·√(e^{2h} − 1)·z (plain). */
function sdeNoise(algo: DpmAlgorithm, t: DpmNode, h: number, noise: tf.Tensor | undefined): tf.Tensor {
  if (!noise) throw new Error(`${algo}: this step needs noise`);
  const root = algo === 'sde-dpmsolver++' ? Math.sqrt(f32(1 - exp32(f32(-2 * h)))) : Math.sqrt(f32(exp32(f32(2 * h)) - 1));
  return tf.mul(f32(t.s * f32(root)), noise);
}

/** First order (= DDIM for `dpmsolver++`): from `base` to `t` with the converted model output `m`. */
export function firstOrderUpdate(
  algo: DpmAlgorithm, t: DpmNode, base: DpmNode, m: tf.Tensor, sample: tf.Tensor, noise?: tf.Tensor,
): tf.Tensor {
  const h = f32(t.lam - base.lam);
  const w = weights(t, base, h);
  switch (algo) {
    case 'dpmsolver++':
      return tf.sub(tf.mul(w.sOverS, sample), tf.mul(f32(t.a * w.emh), m));
    case 'dpmsolver':
      return tf.sub(tf.mul(w.aOverA, sample), tf.mul(f32(t.s * w.eph), m));
    case 'sde-dpmsolver++':
      return tf.add(tf.add(tf.mul(f32(w.sOverS * exp32(-h)), sample), tf.mul(f32(t.a * w.e2), m)), sdeNoise(algo, t, h, noise));
    default:
      return tf.add(tf.sub(tf.mul(w.aOverA, sample), tf.mul(f32(2 * f32(t.s * w.eph)), m)), sdeNoise(algo, t, h, noise));
  }
}

/**
 * Second order from `base` to `t` with h = λ_t − λ_base and the difference term D1 (midpoint or Heun). The
 * multistep solver calls it with base = s0, D0 = m0; the singlestep solver with base = s1, D0 = m1.
 */
export function secondOrderUpdate(
  algo: DpmAlgorithm, solverType: string, t: DpmNode, base: DpmNode, h: number, d0: tf.Tensor, d1: tf.Tensor,
  sample: tf.Tensor, noise?: tf.Tensor,
): tf.Tensor {
  const w = weights(t, base, h);
  const heun = solverType === 'heun';
  switch (algo) {
    case 'dpmsolver++': {
      const c0 = f32(t.a * w.emh);
      const x = tf.sub(tf.mul(w.sOverS, sample), tf.mul(c0, d0));
      return heun ? tf.add(x, tf.mul(f32(t.a * f32(f32(w.emh / h) + 1)), d1)) : tf.sub(x, tf.mul(f32(0.5 * c0), d1));
    }
    case 'dpmsolver': {
      const c0 = f32(t.s * w.eph);
      const x = tf.sub(tf.mul(w.aOverA, sample), tf.mul(c0, d0));
      return tf.sub(x, tf.mul(heun ? f32(t.s * f32(f32(w.eph / h) - 1)) : f32(0.5 * c0), d1));
    }
    case 'sde-dpmsolver++': {
      const c0 = f32(t.a * w.e2);
      const x = tf.add(tf.mul(f32(w.sOverS * exp32(-h)), sample), tf.mul(c0, d0));
      const c1 = heun ? f32(t.a * f32(f32(w.e2 / f32(-2 * h)) + 1)) : f32(0.5 * c0);
      return tf.add(tf.add(x, tf.mul(c1, d1)), sdeNoise(algo, t, h, noise));
    }
    default: {
      const c0 = f32(t.s * w.eph);
      const x = tf.sub(tf.mul(w.aOverA, sample), tf.mul(f32(2 * c0), d0));
      const c1 = heun ? f32(2 * f32(t.s * f32(f32(w.eph / h) - 1))) : c0;
      return tf.add(tf.sub(x, tf.mul(c1, d1)), sdeNoise(algo, t, h, noise));
    }
  }
}

/** Third order from `base` to `t` with the difference terms D1, D2 (deterministic variants only). */
export function thirdOrderUpdate(
  algo: DpmAlgorithm, t: DpmNode, base: DpmNode, h: number, d0: tf.Tensor, d1: tf.Tensor, d2: tf.Tensor, sample: tf.Tensor,
): tf.Tensor {
  const w = weights(t, base, h);
  const h2 = f32(h * h);
  if (algo === 'dpmsolver++') {
    const x = tf.sub(tf.mul(w.sOverS, sample), tf.mul(f32(t.a * w.emh), d0));
    const c1 = f32(t.a * f32(f32(w.emh / h) + 1));
    const c2 = f32(t.a * f32(f32(f32(w.emh + h) / h2) - 0.5));
    return tf.sub(tf.add(x, tf.mul(c1, d1)), tf.mul(c2, d2));
  }
  if (algo !== 'dpmsolver') throw new Error(`third-order DPM-Solver has no ${algo} form`);
  const x = tf.sub(tf.mul(w.aOverA, sample), tf.mul(f32(t.s * w.eph), d0));
  const c1 = f32(t.s * f32(f32(w.eph / h) - 1));
  const c2 = f32(t.s * f32(f32(f32(w.eph - h) / h2) - 0.5));
  return tf.sub(tf.sub(x, tf.mul(c1, d1)), tf.mul(c2, d2));
}

/** `(1 / r)·(a − b)` with the float32 reciprocal diffusers computes. */
export function scaledDiff(r: number, a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.mul(f32(1 / r), tf.sub(a, b));
}
