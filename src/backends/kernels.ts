/**
 * The one way code outside src/backends reaches a backend's own kernels.
 *
 * Layers hold the plain TF.js math, which runs (and is checked against diffusers) on every backend. A backend
 * with something faster for one of those steps registers it here when backends/select.ts sets that backend
 * up, and the layer asks for it, keeping its plain path as the fallback:
 *
 *     kernels().silu?.(x) ?? plainSilu(x)
 *
 * Every entry is optional, so a backend without a set (or one set with `tf.setBackend` directly, without
 * `initBackend`) runs the plain ops: slower, never different in meaning. Besides kernels, a set states facts
 * about its backend that change which algorithm a layer should pick (`packsWeights`, `slowBatchedMatMul`):
 * the backend states the fact, the layer decides what follows from it, so no layer names a backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WeightDtype } from '../nn/packed-weight.js';

/** Options of {@link BackendKernels.groupNorm}. */
export interface GroupNormOptions {
  gamma?: tf.Tensor;
  beta?: tf.Tensor;
  /** SiLU after the affine terms. */
  silu?: boolean;
  /** Added to x before normalising, one value per (batch, channel): any shape of B·C elements. */
  addend?: tf.Tensor | null;
}

/** What a backend may offer. Kernels take and return plain tensors and own no state. */
export interface BackendKernels {
  /**
   * (x − mean) / √(variance + eps) · scale + offset, the statistics broadcast against x (GroupNorm and
   * LayerNorm when {@link groupNorm} is absent).
   */
  normalize?(x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, eps: number, scale?: tf.Tensor, offset?: tf.Tensor): tf.Tensor;
  /**
   * GroupNorm over x viewed as [B, M, G·C] (channels last), with optional affine terms, an addend before and
   * a SiLU after; LayerNorm is the case G = 1, M = 1.
   */
  groupNorm?(x: tf.Tensor, batch: number, numGroups: number, eps: number, o?: GroupNormOptions): tf.Tensor;
  /** x · sigmoid(x). */
  silu?(x: tf.Tensor): tf.Tensor;
  /** diffusers GEGLU's activation: h = [a, gate] on the last axis → a · GELU(gate) (exact GELU). */
  geglu?(h: tf.Tensor): tf.Tensor;
  /** x · w + bias, `w` as matMul's B ([in, out]), the bias added inside the GEMM. */
  matMulBias?(x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor): tf.Tensor2D;
  /** conv2d(x, w) + bias, `w` HWIO, the bias added inside the convolution. */
  conv2dBias?(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pad: number | 'valid', bias: tf.Tensor): tf.Tensor4D;
  /**
   * x · W (+ bias) with W [K, N] held as IEEE halves packed two per int32 element (`w`, see
   * nn/packed-weight.ts), read in the kernel with f32 accumulation. Backends without it cannot hold float16
   * weights (layers/half-weights.ts refuses them there).
   */
  matMulHalf?(x: tf.Tensor2D, w: tf.Tensor, n: number, bias?: tf.Tensor): tf.Tensor2D;
  /** conv2d(x, W) (+ bias) with W HWIO `filterShape` held as packed halves, as {@link matMulHalf}. */
  conv2dHalf?(x: tf.Tensor4D, w: tf.Tensor, filterShape: number[], stride: number, pad: number | 'valid', bias?: tf.Tensor): tf.Tensor4D;
  /**
   * Rows `ids` (int32, any shape, flattened) of a [rows, dim] table piece held as packed halves whose first
   * row is table row `rowStart`: [ids, dim] float32, where an id outside the piece keeps `prev`'s row
   * (zeros when null), so pieces are gathered one after another.
   */
  gatherHalf?(table: tf.Tensor, rows: number, dim: number, ids: tf.Tensor, rowStart: number, prev: tf.Tensor | null): tf.Tensor2D;
  /**
   * Elements [start, start + size(shape)) of x's row-major data as a new tensor, copied once (the range is
   * already checked); null when this backend does not handle x (its dtype), and the caller slices instead.
   */
  contiguousRange?(x: tf.Tensor, start: number, shape: number[]): tf.Tensor | null;
  /**
   * softmax(q kᵀ·scale + bias) v without materialising the scores: q [B, Nq, heads·d], k and v
   * [B, Nk, heads·d], bias rank 4 broadcastable to [B, heads, Nq, Nk] (or null) → [B, Nq, heads·d]; null
   * when this backend declines the shapes (attention/sdpa.ts then runs the plain ops).
   */
  attention?(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number, scale: number, bias: tf.Tensor | null): tf.Tensor3D | null;
  /** Nearest-neighbour 2× upsampling of NHWC input. */
  upsampleNearest2x?(x: tf.Tensor4D): tf.Tensor4D;
  /**
   * matMul's B and conv2d's filter are packed into a copy kept as long as that tensor lives (XNNPACK):
   * resident weights then cost twice their size, offloaded ones a repack per forward (layers/gemm.ts).
   */
  packsWeights?: boolean;
  /** A batched matMul over [B, heads] runs several times slower than one 2-D matMul per matrix. */
  slowBatchedMatMul?: boolean;
}

const NONE: BackendKernels = Object.freeze({});
const sets = new Map<string, BackendKernels>();

/**
 * Sets the kernels of the TF.js backend `tfBackend` (replacing any set before). For backend set-up code in
 * src/backends only.
 */
export function registerKernels(tfBackend: string, set: BackendKernels): void {
  sets.set(tfBackend, set);
}

/** The kernels of the active backend (an empty set when it registered none). */
export function kernels(): BackendKernels {
  return sets.get(tf.getBackend()) ?? NONE;
}

/** Whether the active backend reads float16 weights (weightDtype 'float16'). */
export function readsHalfWeights(): boolean {
  const k = kernels();
  return !!(k.matMulHalf && k.conv2dHalf && k.gatherHalf);
}

/** The error for float16 weights on a backend that cannot read them, naming the option and the backend. */
export function halfWeightsError(): Error {
  return new Error(`weightDtype 'float16' (--weight-dtype float16) keeps weights as packed halves that only WebGPU's kernels read, and the active backend is ${tf.getBackend()}: use the webgpu backend, or float32 weights`);
}

/** Throws {@link halfWeightsError} when `dtype` is float16 and the active backend cannot read it. */
export function checkWeightDtype(dtype: WeightDtype): void {
  if (dtype === 'float16' && !readsHalfWeights()) throw halfWeightsError();
}
