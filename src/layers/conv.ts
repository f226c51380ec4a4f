import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';
import { conv2dBias, conv2dStreamed, matMulBias, streamsWeight } from './gemm.js';
import { packedWeight, streamedWeight } from '../nn/streamed-weights.js';
import { lowRankConv, type LowRankBranch } from './low-rank.js';

/**
 * torch.nn.Conv2d on NHWC input: weight HWIO, PyTorch's symmetric zero `padding` and `stride`. On wasm a
 * large weight is held [O, kh·kw·I] after its first use instead (layers/gemm.ts).
 */
export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias?: Parameter;
  /** Unfused LoRA terms added to the output (src/lora manages them); empty for a plain layer. */
  readonly lowRank: LowRankBranch[] = [];
  constructor(
    readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number,
    readonly stride = 1, readonly padding = 0, bias = true,
  ) {
    super();
    this.weight = this.param('weight', [kernelSize, kernelSize, inChannels, outChannels], 'conv');
    if (bias) this.bias = this.param('bias', [outChannels]);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (!this.lowRank.length) return this.forwardWeight(x);
    return tf.tidy(() => tf.add(this.forwardWeight(x), lowRankConv(x, this.lowRank, this.stride, this.padding === 0 ? 'valid' : this.padding)));
  }

  /** The convolution by the layer's own weight. */
  private forwardWeight(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const pad = this.padding === 0 ? 'valid' : this.padding;
      const bias = this.bias?.t;
      if (streamsWeight(this.weight.size)) {
        return conv2dStreamed(x, streamedWeight(this.weight), this.kernelSize, this.stride, pad, bias);
      }
      const w = packedWeight(this.weight) as tf.Tensor4D;
      if (this.kernelSize === 1 && this.stride === 1 && this.padding === 0) {
        // A 1×1 convolution is a matMul over channels; that path is faster on every backend.
        const [b, h, wd, c] = x.shape;
        return matMulBias(x.reshape([b * h * wd, c]), w.reshape([c, this.outChannels]), bias).reshape([b, h, wd, this.outChannels]);
      }
      return conv2dBias(x, w, this.stride, pad, bias);
    });
  }
}
