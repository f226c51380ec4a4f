/** A 2-D transpose that stays fast on tall inputs (the streamed GEMM's layout changes, layers/gemm.ts). */
import * as tf from '@tensorflow/tfjs-core';
// x.reshape(), x.transpose()… on tf.Tensor.
import './chained-ops.js';

/**
 * [r, c] → [c, r]. wasm's 2-D transpose writes with a stride of r floats, which misses the cache on tall
 * inputs (8× slower at 8192×320); moving 8-float runs first and then transposing 8-wide strips does not.
 * With `consume`, `x` is disposed as soon as the first pass has read it: converting a weight in place then
 * holds one extra copy of it in flight, never two (./streamed-weights.ts).
 */
export function transpose2d(x: tf.Tensor2D, consume = false): tf.Tensor2D {
  const [r, c] = x.shape;
  if (c % 8 !== 0 || r < 64) {
    const out = tf.transpose(x);
    if (consume) x.dispose();
    return out;
  }
  const runs = tf.tidy(() => x.reshape([r, c / 8, 8]).transpose([1, 0, 2]));
  if (consume) x.dispose();
  const out = tf.tidy(() => runs.transpose([0, 2, 1]).reshape([c, r]) as tf.Tensor2D);
  runs.dispose();
  return out;
}
