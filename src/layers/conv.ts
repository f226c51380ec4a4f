import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';
import { conv2dBias, conv2dHalf, conv2dStreamed, matMulBias, matMulHalf, streamsWeight } from './gemm.js';
import { packedWeight, streamedWeight } from '../nn/streamed-weights.js';
import { lowRankConv, type LowRankBranch } from './low-rank.js';

/**
 * torch.nn.Conv2d on NHWC input: weight HWIO, PyTorch's symmetric zero `padding` and `stride`. On wasm a
 * large weight is held [O, kh·kw·I] after its first use instead (layers/gemm.ts); on WebGPU it may be held
 * as float16 (nn/packed-weight.ts).
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
    this.weight = this.param('weight', [kernelSize, kernelSize, inChannels, outChannels], 'conv', { halves: true });
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
      const pointwise = this.kernelSize === 1 && this.stride === 1 && this.padding === 0;
      const half = this.weight.isPacked;
      if (!half && streamsWeight(this.weight.size)) {
        return conv2dStreamed(x, streamedWeight(this.weight), this.kernelSize, this.stride, pad, bias);
      }
      if (pointwise) {
        // A 1×1 convolution is a matMul over channels; that path is faster on every backend.
        const [b, h, wd, c] = x.shape;
        const x2 = x.reshape([b * h * wd, c]) as tf.Tensor2D;
        const y = half
          ? matMulHalf(x2, this.weight.stored, bias)
          : matMulBias(x2, packedWeight(this.weight).reshape([c, this.outChannels]), bias);
        return y.reshape([b, h, wd, this.outChannels]);
      }
      return half
        ? conv2dHalf(x, this.weight.stored, this.stride, pad, bias)
        : conv2dBias(x, packedWeight(this.weight) as tf.Tensor4D, this.stride, pad, bias);
    });
  }
}
