/**
 * What the EDM samplers (Karras et al. 2022, arXiv 2206.00364) share: the sigma schedule, the preconditioning
 * (c_in, c_skip, c_out, c_noise), all in float32 as diffusers' torch tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ConfigRules } from './base.js';
import { f32, torchLinspaceF32 } from './schedule.js';
import { rule } from '../io/config.js';

/** The keys both EDM classes have, with diffusers' defaults. */
export const EDM_DEFAULTS: Record<string, unknown> = {
  sigma_min: 0.002,
  sigma_max: 80.0,
  sigma_data: 0.5,
  sigma_schedule: 'karras',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  rho: 7.0,
};

export const EDM_RULES: ConfigRules = [
  ['sigma_min', rule.number({ min: 1e-12 })],
  ['sigma_max', rule.number({ min: 1e-12 })],
  ['sigma_data', rule.number({ min: 1e-12 })],
  ['sigma_schedule', rule.oneOf(['karras', 'exponential'])],
  ['num_train_timesteps', rule.int(1, 100_000)],
  ['rho', rule.number({ min: 1e-6, max: 1000 })],
];

/** float32 sigmas of an n-step run (descending, without the final one): Karras' ρ-schedule or log-uniform. */
export function edmSigmas(c: Record<string, unknown>, n: number): number[] {
  const sMin = Number(c.sigma_min);
  const sMax = Number(c.sigma_max);
  if (!(sMax > sMin)) throw new Error(`${String(c._class_name)}: sigma_max=${sMax} must be larger than sigma_min=${sMin}`);
  if (c.sigma_schedule === 'exponential') {
    return Array.from(torchLinspaceF32(Math.log(sMin), Math.log(sMax), n), (v) => f32(Math.exp(v))).reverse();
  }
  const rho = Number(c.rho);
  const minInv = sMin ** (1 / rho);
  const maxInv = sMax ** (1 / rho);
  // torch: (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho on a float32 ramp, python scalars cast to float32.
  const span = f32(minInv - maxInv);
  return Array.from(torchLinspaceF32(0, 1, n), (r) => f32(f32(f32(maxInv) + f32(r * span)) ** f32(rho)));
}

/** c_noise = ¼·log σ: the EDM timesteps the denoiser is called with (floats, negative below σ = 1). */
export const edmTimestep = (sigma: number): number => f32(0.25 * f32(Math.log(sigma)));

/** σ² + σ_data² in float32. */
const denom = (sigma: number, sigmaData: number): number => f32(f32(sigma * sigma) + f32(sigmaData * sigmaData));

/** c_in = 1/√(σ² + σ_data²). */
export const edmInputScale = (sigma: number, sigmaData: number): number => f32(1 / f32(Math.sqrt(denom(sigma, sigmaData))));

/** x̂₀ = c_skip·x + c_out·F (v-prediction flips the sign of c_out). Caller owns the result. */
export function edmPreconditionOutputs(
  sample: tf.Tensor, modelOutput: tf.Tensor, sigma: number, sigmaData: number, predictionType: unknown,
): tf.Tensor {
  const d = denom(sigma, sigmaData);
  // torch evaluates `python_float / tensor` as reciprocal(tensor) * python_float.
  const cSkip = f32(f32(1 / d) * f32(sigmaData * sigmaData));
  const cOut = f32(f32((predictionType === 'v_prediction' ? -sigma : sigma) * f32(sigmaData)) / f32(Math.sqrt(d)));
  return tf.tidy(() => tf.add(tf.mul(cSkip, sample), tf.mul(cOut, modelOutput)));
}

/** √(σ_max² + 1), diffusers' `init_noise_sigma` (a float64 Python float there). */
export const edmInitNoiseSigma = (c: Record<string, unknown>): number => Math.sqrt(Number(c.sigma_max) ** 2 + 1);
