/**
 * How Linear and Conv2d multiply activations by their weights.
 *
 * tfjs-backend-wasm runs a 2-D matMul as an XNNPACK fully-connected operator and conv2d as an XNNPACK
 * convolution; both pack their second ("weights") operand once and keep the packed copy until that tensor
 * is disposed. With the weight in that place, resident weights cost twice their size (SD-1.5's 3.2 GiB UNet
 * then overflows the ~3.9 GiB wasm heap) and an offloaded weight is repacked every forward.
 *
 * The 'streamed' strategy puts the weight on the operand XNNPACK streams instead:
 *   yᵀ[out, rows] = W[out, in] · xᵀ[in, rows]
 * The packed operand is then the activation (a fresh tensor, packed at the cost of reading it once and freed
 * with it), and the weight is read in place. It needs the weight as [out, in], so a streamed parameter's
 * tensor is kept in that layout (nn/streamed-weights.ts); convolutions become one GEMM over an im2col
 * built by XNNPACK itself (a convolution with a one-hot filter, see {@link conv2dStreamed}).
 *
 * 'packed' is TF.js's own path (the weight as matMul's B / conv2d's filter). 'auto' (the default) streams only
 * on a backend that packs its weights (`packsWeights` in backends/kernels.ts: wasm), and only weights of {@link AUTO_MIN_STREAMED}
 * elements or more: below that the packed copy costs little memory, while the streamed path's transposes and
 * im2col cost more than the GEMM saves (a UNet with 32–128 channels ran 1.8× slower streamed).
 */
import * as tf from '@tensorflow/tfjs-core';
// x.reshape(), x.transpose()… on tf.Tensor.
import '../nn/chained-ops.js';
import { transpose2d } from '../nn/transpose2d.js';
import type { PackedWeight } from '../nn/packed-weight.js';
import { halfWeightsError, kernels, type BackendKernels } from '../backends/kernels.js';

export type GemmStrategy = 'auto' | 'packed' | 'streamed';

const STRATEGIES: GemmStrategy[] = ['auto', 'packed', 'streamed'];

function initialStrategy(): GemmStrategy {
  // TGATE_GEMM lets a benchmark compare both paths without code changes.
  const env = typeof process !== 'undefined' ? process.env?.TGATE_GEMM : undefined;
  if (env === undefined || env === '') return 'auto';
  if (!STRATEGIES.includes(env as GemmStrategy)) throw new Error(`TGATE_GEMM must be one of ${STRATEGIES.join(', ')}, got "${env}"`);
  return env as GemmStrategy;
}

let strategy: GemmStrategy = initialStrategy();

/** Selects the strategy for every Linear and Conv2d from now on (env TGATE_GEMM sets the initial one). */
export function setGemmStrategy(s: GemmStrategy): void {
  if (!STRATEGIES.includes(s)) throw new Error(`unknown GEMM strategy "${s}"; choose one of ${STRATEGIES.join(', ')}`);
  strategy = s;
}

export function getGemmStrategy(): GemmStrategy { return strategy; }

/** Smallest weight (elements) that 'auto' streams: 1 MiB of fp32. SD-1.5 then keeps 7.2 M parameters packed (29 MB). */
export const AUTO_MIN_STREAMED = 1 << 18;

/** Whether the current strategy and backend stream large weights (the ones that decide whether a model fits). */
export function streamsWeights(): boolean {
  return strategy === 'streamed' || (strategy === 'auto' && !!kernels().packsWeights);
}

/** Whether a weight of `size` elements is streamed now. */
export function streamsWeight(size: number): boolean {
  return strategy === 'streamed' || (streamsWeights() && size >= AUTO_MIN_STREAMED);
}

/** x · w (+ bias), `w` as matMul's B ([in, out]); the bias inside the GEMM where the backend offers that (WebGPU). */
export function matMulBias(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D {
  const fused = kernels().matMulBias;
  if (bias && fused) return fused(x, w, bias);
  return tf.tidy(() => (bias ? tf.add<tf.Tensor2D>(tf.matMul(x, w), bias) : tf.matMul(x, w)));
}

/** conv2d(x, w) (+ bias), `w` HWIO; the bias inside the convolution where the backend offers that (WebGPU). */
export function conv2dBias(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pad: number | 'valid', bias?: tf.Tensor): tf.Tensor4D {
  const fused = kernels().conv2dBias;
  if (bias && fused) return fused(x, w, stride, pad, bias);
  return tf.tidy(() => (bias ? tf.add<tf.Tensor4D>(tf.conv2d(x, w, stride, pad), bias) : tf.conv2d(x, w, stride, pad)));
}

/** The backend's kernel reading float16 weights (the backend may have changed since loading). */
export function halfKernel<K extends 'matMulHalf' | 'conv2dHalf' | 'gatherHalf'>(name: K): NonNullable<BackendKernels[K]> {
  const k = kernels()[name];
  if (!k) throw halfWeightsError();
  return k as NonNullable<BackendKernels[K]>;
}

/** x · W (+ bias) for a float16 Linear weight W [in, out] (one piece). */
export function matMulHalf(x: tf.Tensor2D, w: PackedWeight, bias?: tf.Tensor): tf.Tensor2D {
  return halfKernel('matMulHalf')(x, w.pieces[0]!, w.shape[w.shape.length - 1]!, bias);
}

/** conv2d(x, W) (+ bias) for a float16 Conv2d weight W HWIO (one piece). */
export function conv2dHalf(x: tf.Tensor4D, w: PackedWeight, stride: number, pad: number | 'valid', bias?: tf.Tensor): tf.Tensor4D {
  return halfKernel('conv2dHalf')(x, w.pieces[0]!, w.shape, stride, pad, bias);
}

/** y[rows, out] = x[rows, in] · W (+ bias), with `w` in the streamed layout [out, in]. */
export function matMulStreamed(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const y = transpose2d(tf.matMul(w, transpose2d(x)));
    return bias ? tf.add<tf.Tensor2D>(y, bias) : y;
  });
}

/**
 * im2col, transposed: [kh·kw·C, B·Ho·Wo] with rows in (tap, channel) order. The patches come from XNNPACK:
 * each channel of each image is convolved as its own 1-channel image with kh·kw one-hot filters, which
 * copies every tap exactly (x·1 + 0·others) and handles stride and padding.
 */
function im2colT(x: tf.Tensor4D, kh: number, kw: number, stride: number, pad: number | 'valid'): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const taps = kh * kw;
    const planes = transpose2d(x.reshape([b * h * w, c])).reshape([c * b, h, w, 1]) as tf.Tensor4D;
    const eye = tf.eye(taps).reshape([kh, kw, 1, taps]) as tf.Tensor4D;
    const patches = tf.conv2d(planes, eye, stride, pad);
    const [, ho, wo] = patches.shape;
    return patches.reshape([c, b * ho * wo, taps]).transpose([2, 0, 1]).reshape([taps * c, b * ho * wo]) as tf.Tensor2D;
  });
}

/**
 * conv2d(x, W) (+ bias) with `w` in the streamed layout [O, kh·kw·I]: a 1×1 stride-1 unpadded convolution is a
 * matMul over channels; anything else is one GEMM over {@link im2colT}.
 */
export function conv2dStreamed(
  x: tf.Tensor4D, w: tf.Tensor2D, kernelSize: number, stride: number, pad: number | 'valid', bias?: tf.Tensor,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, wd, c] = x.shape;
    const co = w.shape[0];
    if (kernelSize === 1 && stride === 1 && (pad === 'valid' || pad === 0)) {
      return matMulStreamed(x.reshape([b * h * wd, c]), w, bias).reshape([b, h, wd, co]) as tf.Tensor4D;
    }
    const cols = im2colT(x, kernelSize, kernelSize, stride, pad);
    const p = cols.shape[1];
    let y: tf.Tensor = transpose2d(tf.matMul(w, cols));
    if (bias) y = tf.add(y, bias);
    // Output size as conv2d computes it, from the patches' count: p = b·ho·wo.
    const pads = pad === 'valid' ? 0 : pad;
    const ho = Math.floor((h + 2 * pads - kernelSize) / stride) + 1;
    const wo = p / (b * ho);
    return y.reshape([b, ho, wo, co]) as tf.Tensor4D;
  });
}
