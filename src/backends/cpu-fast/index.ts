/**
 * Faster kernels for @tensorflow/tfjs-backend-cpu.
 *
 * The stock cpu kernels decompose every output index into coordinates when an operand broadcasts, build
 * Softmax from five separate kernels, and copy non-contiguous slices element by element through
 * TensorBuffer.get/set. For a diffusion UNet that makes one forward take tens of seconds. Each fast kernel
 * (in this folder, one file per kernel family) handles the common float32 cases with flat strided
 * loops and returns null for everything else, which the wrapper installed here hands to the original
 * kernel. Values match the originals: the same float64 arithmetic, the same float32 rounding points, the
 * same summation order (BatchMatMul keeps the stock k-blocking).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Args, FastFunc } from './kernel-base.js';
import { conv2D } from './conv.js';
import {
  add, erf, exp, maximum, minimum, multiply, realDiv, rsqrt, sigmoid, squaredDifference, sub, tanh,
} from './elementwise.js';
import { batchMatMul } from './matmul.js';
import { slice, splitV, transpose } from './layout.js';
import { max, mean, softmax, sum } from './reduce.js';

const MARK = '__tgateFastCpu';

/** The fast kernels by kernel name; exported for tests that compare them with the stock ones. */
export const FAST_CPU_KERNELS: Record<string, FastFunc> = {
  Add: add,
  Sub: sub,
  Multiply: multiply,
  RealDiv: realDiv,
  Maximum: maximum,
  Minimum: minimum,
  SquaredDifference: squaredDifference,
  Softmax: softmax,
  Sum: sum,
  Mean: mean,
  Max: max,
  Transpose: transpose,
  Slice: slice,
  SplitV: splitV,
  BatchMatMul: batchMatMul,
  Conv2D: conv2D,
  Exp: exp,
  Sigmoid: sigmoid,
  Erf: erf,
  Rsqrt: rsqrt,
  Tanh: tanh,
};

/** Stock cpu kernels replaced by installFastCpuKernels, by name (for tests and debugging). */
export const originalCpuKernels: Record<string, tf.KernelConfig> = {};

/**
 * Wraps the registered cpu kernels with the fast paths above. Idempotent; call after
 * `@tensorflow/tfjs-backend-cpu` is imported. Returns the names of the kernels wrapped by this call.
 */
export function installFastCpuKernels(): string[] {
  const done: string[] = [];
  for (const [name, fast] of Object.entries(FAST_CPU_KERNELS)) {
    const orig = tf.getKernel(name, 'cpu');
    if (!orig || (orig.kernelFunc as unknown as Record<string, unknown>)[MARK]) continue;
    const stock = orig.kernelFunc;
    const kernelFunc = ((args: Args) => fast(args) ?? stock(args as unknown as Parameters<tf.KernelFunc>[0])) as unknown as tf.KernelFunc;
    (kernelFunc as unknown as Record<string, unknown>)[MARK] = true;
    originalCpuKernels[name] = { ...orig };
    tf.unregisterKernel(name, 'cpu');
    tf.registerKernel({ ...orig, kernelFunc });
    done.push(name);
  }
  return done;
}
