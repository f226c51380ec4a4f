import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';

/** torch.nn.Linear: weight stored [in, out] (transposed once at load), applied on the last axis. */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias?: Parameter;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    this.weight = this.param('weight', [inFeatures, outFeatures], 'linear');
    if (bias) this.bias = this.param('bias', [outFeatures]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2 = x.rank === 2 ? (x as tf.Tensor2D) : x.reshape([-1, this.inFeatures]) as tf.Tensor2D;
      let y: tf.Tensor = tf.matMul(x2, this.weight.t as tf.Tensor2D);
      if (this.bias) y = tf.add(y, this.bias.t);
      return x.rank === 2 ? y : y.reshape([...lead, this.outFeatures]);
    });
  }
}
