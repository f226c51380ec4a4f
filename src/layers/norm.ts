import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';

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
      const shape = x.shape;
      const g = x.reshape([shape[0], -1, this.numGroups, this.numChannels / this.numGroups]);
      const { mean, variance } = tf.moments(g, [1, 3], true);
      let y = tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, this.eps))).reshape(shape);
      if (this.weight) y = tf.add(tf.mul(y, this.weight.t), this.bias!.t);
      return y as T;
    });
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
      const { mean, variance } = tf.moments(x, -1, true);
      let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)));
      if (this.weight) y = tf.mul(y, this.weight.t);
      if (this.bias) y = tf.add(y, this.bias.t);
      return y as T;
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
