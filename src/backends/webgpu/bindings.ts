/** Guarding weights against WebGPU's per-binding size limit, where an oversized binding fails silently. */
import type * as tf from '@tensorflow/tfjs-core';
import { bufferLimitBytes } from '../limits.js';

/**
 * Returns `w`, or throws when it is larger than one binding may be: WebGPU would drop the dispatch and
 * leave zeros (T5-XXL's 168 MB float32 feed-forward weights, against a browser's default 128 MiB).
 */
export function checkBinding<T extends tf.Tensor>(w: T, what: string): T {
  const limit = bufferLimitBytes();
  const bytes = w.size * 4;
  if (limit !== null && bytes > limit) {
    throw new Error(`${what} of shape [${w.shape}] needs ${(bytes / 2 ** 20).toFixed(1)} MiB in one binding, over this WebGPU device's ` +
      `${(limit / 2 ** 20).toFixed(1)} MiB maxStorageBufferBindingSize; load the model with weightDtype 'float16' (--weight-dtype float16) to halve it`);
  }
  return w;
}
