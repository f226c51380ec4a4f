import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';
import { silu } from './activations.js';
import { kernels } from '../backends/kernels.js';

/**
 * (x − mean) / √(variance + eps) · scale + offset, with mean/variance/scale/offset broadcast against x: the
 * backend's one-kernel version where it has one (WebGPU), else the plain ops (cpu's and wasm's batchNorm
 * kernels only broadcast over the last axis).
 */
function normalize(x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, eps: number, scale?: tf.Tensor, offset?: tf.Tensor): tf.Tensor {
  const fused = kernels().normalize?.(x, mean, variance, eps, scale, offset);
  if (fused) return fused;
  let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  if (scale) y = tf.mul(y, scale);
  if (offset) y = tf.add(y, offset);
  return y;
}

/** torch.nn.GroupNorm over the channel (last) axis of NHWC or [B, N, C] input. */
export class GroupNorm extends Module {
  readonly weight?: Parameter;
  readonly bias?: Parameter;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5, affine = true) {
    super();
    if (numChannels % numGroups !== 0) throw new Error(`GroupNorm: ${numChannels} channels are not divisible into ${numGroups} groups`);
    if (affine) {
      this.weight = this.param('weight', [numChannels]);
      this.bias = this.param('bias', [numChannels]);
    }
  }

  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const fused = this.kernel(x, false);
      if (fused) return fused;
      const shape = x.shape;
      const cg = this.numChannels / this.numGroups;
      const g = x.reshape([shape[0], -1, this.numGroups, cg]);
      const mean = tf.mean(g, [1, 3], true);
      const variance = tf.mean(tf.squaredDifference(g, mean), [1, 3], true);
      const affine = this.weight ? [this.weight.t.reshape([1, 1, this.numGroups, cg]), this.bias!.t.reshape([1, 1, this.numGroups, cg])] as const : null;
      return normalize(g, mean, variance, this.eps, affine?.[0], affine?.[1]).reshape(shape) as T;
    });
  }

  /**
   * act(forward(x + addend)); `addend` holds one value per (batch, channel), e.g. a resnet's projected time
   * embedding [B, 1, 1, C]. Where the backend has a GroupNorm kernel (WebGPU) the add and a following SiLU
   * run inside it.
   */
  forwardAct<T extends tf.Tensor>(x: T, act: (t: tf.Tensor) => tf.Tensor, addend: tf.Tensor | null = null): T {
    const fused = act === silu ? this.kernel(x, true, addend) : undefined;
    if (fused) return fused;
    return tf.tidy(() => act(this.forward(addend ? tf.add(x, addend) : x)) as T);
  }

  /** The backend's GroupNorm kernel on x (with SiLU, addend); undefined when the backend has none. */
  private kernel<T extends tf.Tensor>(x: T, silu: boolean, addend: tf.Tensor | null = null): T | undefined {
    return kernels().groupNorm?.(x, x.shape[0], this.numGroups, this.eps, { gamma: this.weight?.t, beta: this.bias?.t, silu, addend }) as T | undefined;
  }
}

/** torch.nn.LayerNorm over the last axis (affine and bias optional, as diffusers uses both). */
export class LayerNorm extends Module {
  readonly weight?: Parameter;
  readonly bias?: Parameter;
  constructor(readonly dim: number, readonly eps = 1e-5, elementwiseAffine = true, bias = true) {
    super();
    if (elementwiseAffine) {
      this.weight = this.param('weight', [dim]);
      if (bias) this.bias = this.param('bias', [dim]);
    }
  }

  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const fused = kernels().groupNorm?.(x, x.size / this.dim, 1, this.eps, { gamma: this.weight?.t, beta: this.bias?.t });
      if (fused) return fused as T;
      const mean = tf.mean(x, -1, true);
      const variance = tf.mean(tf.squaredDifference(x, mean), -1, true);
      return normalize(x, mean, variance, this.eps, this.weight?.t, this.bias?.t) as T;
    });
  }
}

/** T5's RMS norm: no mean subtraction, no bias. */
export class RMSNorm extends Module {
  readonly weight: Parameter;
  constructor(readonly dim: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param('weight', [dim]);
  }
  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), this.eps))), this.weight.t) as T);
  }
}
