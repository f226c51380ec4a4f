/** A contiguous range of a tensor's data as a tensor of its own: heads of q/k/v, GEGLU's halves. */
import * as tf from '@tensorflow/tfjs-core';
import { kernels } from '../backends/kernels.js';

/**
 * Elements [start, start + size(shape)) of x's row-major data, as a new tensor of `shape`: one copy of just
 * that range where the backend has a kernel for it (wasm, whose Slice copies its whole input out of the heap
 * first), else a slice of the flat view.
 */
export function contiguousRange(x: tf.Tensor, start: number, shape: number[]): tf.Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  if (start < 0 || start + size > x.size) throw new Error(`contiguousRange: [${start}, ${start + size}) is outside a tensor of ${x.size} elements`);
  return kernels().contiguousRange?.(x, start, shape) ?? tf.tidy(() => tf.reshape(tf.slice(tf.reshape(x, [x.size]), start, size), shape));
}
