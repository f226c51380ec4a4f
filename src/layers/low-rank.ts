/**
 * Low-rank terms a Linear or Conv2d adds to its output without changing its weight: how LoRA adapters run
 * before they are fused (src/lora owns them; a layer only evaluates them). Each branch adds
 * `scale · up(down(x))`, where `down` has the layer's input width (for a convolution also its kernel, stride
 * and padding) and `up` is a 1×1 map to the output width, as in diffusers' LoRA layers.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface LowRankBranch {
  /** Linear: [in, r]; Conv2d: HWIO [k, k, in, r]. */
  readonly down: tf.Tensor;
  /** [r, out]. */
  readonly up: tf.Tensor2D;
  /** The adapter's scale × alpha / rank; the owner may change it between forwards. */
  scale: number;
}

/** Σ scale·(x·down)·up over `branches`, for x [rows, in]. */
export function lowRankLinear(x: tf.Tensor2D, branches: readonly LowRankBranch[]): tf.Tensor2D {
  return tf.tidy(() => branches
    .map((b) => tf.matMul(tf.mul(tf.matMul(x, b.down as tf.Tensor2D), b.scale), b.up))
    .reduce((a, d) => tf.add(a, d)) as tf.Tensor2D);
}

/** The same sum for a convolution on NHWC `x`: down is a convolution with the layer's stride and padding. */
export function lowRankConv(x: tf.Tensor4D, branches: readonly LowRankBranch[], stride: number, pad: number | 'valid'): tf.Tensor4D {
  return tf.tidy(() => branches
    .map((b) => {
      const h = tf.conv2d(x, b.down as tf.Tensor4D, stride, pad);
      const [n, ho, wo, r] = h.shape;
      return tf.matMul(tf.mul(h.reshape([n * ho * wo, r]), b.scale), b.up).reshape([n, ho, wo, b.up.shape[1]]) as tf.Tensor4D;
    })
    .reduce((a, d) => tf.add(a, d)));
}
