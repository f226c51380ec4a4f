/** Checks of the options every pipeline's `generate` shares, and the tokenizer truncation warning. */
import type * as tf from '@tensorflow/tfjs-core';
import type { TruncationReport } from '../tokenizers/index.js';

/** Checks height/width against the latent factor (VAE × patch) the model needs. */
export function checkSize(height: number, width: number, factor: number, what: string): void {
  for (const [k, v] of [['height', height], ['width', width]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % factor !== 0) {
      throw new Error(`${k} ${v} must be a positive multiple of ${factor} (${what})`);
    }
  }
}

/** Checks an embedding tensor's rank and width, naming the option. */
export function checkEmbeds(name: string, t: tf.Tensor | undefined, width: number, rank = 3): void {
  if (!t) return;
  if (t.rank !== rank || t.shape[rank - 1] !== width) {
    throw new Error(`${name} must have rank ${rank} with last dimension ${width}, got shape [${t.shape}]`);
  }
}

/** Prints a tokenizer truncation warning once per prompt (diffusers logs the same). */
export function warnTruncated(reports: TruncationReport[], warn: (msg: string) => void = console.warn): void {
  for (const r of reports) if (r.truncated) warn(`[tgate] ${r.message}`);
}

/** Steps and guidance checks shared by the pipelines. */
export function checkCommon(o: { numInferenceSteps?: number; guidanceScale?: number; guidanceRescale?: number; seed?: number }): void {
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed <= 0xffffffff)) {
    throw new Error(`seed must be an integer in 0…2^32−1, got ${o.seed}`);
  }
  if (o.numInferenceSteps !== undefined && (!Number.isInteger(o.numInferenceSteps) || o.numInferenceSteps < 1)) {
    throw new Error(`numInferenceSteps must be a positive integer, got ${o.numInferenceSteps}`);
  }
  if (o.guidanceScale !== undefined && !Number.isFinite(o.guidanceScale)) throw new Error(`guidanceScale must be a number, got ${o.guidanceScale}`);
  if (o.guidanceRescale !== undefined && !(o.guidanceRescale >= 0 && o.guidanceRescale <= 1)) {
    throw new Error(`guidanceRescale must be in [0, 1], got ${o.guidanceRescale}`);
  }
}
