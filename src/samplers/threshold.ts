/** Dynamic thresholding of the predicted x₀ (Imagen, arXiv 2205.11487), as diffusers' `_threshold_sample`. */
import * as tf from '@tensorflow/tfjs-core';
import { f32 } from './schedule.js';

/**
 * Per batch row: s = the `ratio` quantile of |x₀| (torch.quantile's linear interpolation), clamped to
 * [1, maxValue] (torch.clamp gives maxValue when maxValue < 1); then x₀ is clipped to [−s, s] and divided by s.
 * Runs on the device (top-k instead of a full sort), so no read-back. Caller owns the result.
 */
export function thresholdSample(x: tf.Tensor, ratio: number, maxValue: number): tf.Tensor {
  return tf.tidy(() => {
    const b = x.shape[0];
    const n = x.size / b;
    const flat = tf.reshape(x, [b, n]);
    // torch computes the rank q·(n − 1) in the tensor's dtype (float32), then lerps the two neighbours.
    const rank = f32(f32(ratio) * (n - 1));
    const lo = Math.floor(rank);
    const w = f32(rank - lo);
    // Ascending index `lo` is descending index n − 1 − lo: the last of the top n − lo values.
    const k = n - lo;
    const top = tf.topk(tf.abs(flat), k).values;
    const below = tf.slice(top, [0, k - 1], [b, 1]);
    const above = k >= 2 && w !== 0 ? tf.slice(top, [0, k - 2], [b, 1]) : below;
    const q = w === 0 ? below : tf.add(below, tf.mul(w, tf.sub(above, below)));
    const s = tf.minimum(tf.maximum(q, 1), maxValue);
    const clipped = tf.minimum(tf.maximum(flat, tf.neg(s)), s);
    return tf.reshape(tf.div(clipped, s), x.shape);
  });
}
