/**
 * Batch rows as diffusers lays them out: each prompt's conditioning repeated once per image ([p0, p0, p1, p1],
 * torch's `repeat(1, n, 1).view(B·n, …)`), inputs tiled to the batch ([i0, i1, i0, i1], torch's `repeat(k, 1, …)` and
 * `cat([x] * k)`), and the guidance batch [negative rows…, positive rows…].
 */
import * as tf from '@tensorflow/tfjs-core';

/** Rows [r0 ×n, r1 ×n, …] (repeat_interleave along dim 0), always a new tensor. */
export function repeatPerPrompt<T extends tf.Tensor>(t: T, n: number): T {
  if (n === 1) return t.clone();
  const idx = Array.from({ length: t.shape[0] * n }, (_, i) => Math.floor(i / n));
  return tf.tidy(() => tf.gather(t, tf.tensor1d(idx, 'int32'))) as T;
}

/** Rows [r0, r1, …] repeated k times as a whole (torch `repeat(k, 1, …)`), always a new tensor. */
export function tileRows<T extends tf.Tensor>(t: T, k: number): T {
  if (k === 1) return t.clone();
  return tf.tile(t, [k, ...new Array<number>(t.rank - 1).fill(1)]) as T;
}

/**
 * `t` (B rows) tiled to `batch` rows (a new tensor), as diffusers duplicates images and masks to the prompt batch;
 * `what` names the input when B does not divide the batch.
 */
export function tileToBatch<T extends tf.Tensor>(t: T, batch: number, what: string): T {
  const b = t.shape[0];
  if (batch % b !== 0) throw new Error(`${what} has ${b} rows, which does not divide the ${batch} images generated (prompts × numImagesPerPrompt)`);
  return tileRows(t, batch / b);
}
