import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';
import { matMulBias, matMulHalf, matMulStreamed, streamsWeight } from './gemm.js';
import { transpose2d } from '../nn/transpose2d.js';
import { packedWeight, streamedWeight } from '../nn/streamed-weights.js';
import { lowRankLinear, type LowRankBranch } from './low-rank.js';

/**
 * torch.nn.Linear: weight stored [in, out] (transposed once at load), applied on the last axis. On wasm a
 * large weight is held [out, in] after its first use instead (layers/gemm.ts: XNNPACK keeps no packed copy);
 * on WebGPU it may be held as float16 (nn/packed-weight.ts).
 */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias?: Parameter;
  /** Unfused LoRA terms added to the output (src/lora manages them); empty for a plain layer. */
  readonly lowRank: LowRankBranch[] = [];
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    this.weight = this.param('weight', [inFeatures, outFeatures], 'linear', { halves: true });
    if (bias) this.bias = this.param('bias', [outFeatures]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2 = x.rank === 2 ? (x as tf.Tensor2D) : x.reshape([-1, this.inFeatures]) as tf.Tensor2D;
      let y: tf.Tensor2D;
      if (this.weight.isPacked) y = matMulHalf(x2, this.weight.stored, this.bias?.t);
      else if (streamsWeight(this.weight.size)) y = matMulStreamed(x2, streamedWeight(this.weight), this.bias?.t);
      else y = matMulBias(x2, packedWeight(this.weight) as tf.Tensor2D, this.bias?.t);
      const out = this.lowRank.length ? tf.add(y, lowRankLinear(x2, this.lowRank)) : y;
      return x.rank === 2 ? out : out.reshape([...lead, this.outFeatures]);
    });
  }

  /**
   * The same map on transposed activations: xᵀ [in, rows] → yᵀ [out, rows]. With a streamed weight this is
   * the streamed GEMM without its two transposes, so a chain of Linears can stay transposed (FeedForward).
   */
  forwardTransposed(xT: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy((): tf.Tensor2D => {
      if (this.weight.isPacked || !streamsWeight(this.weight.size) || this.lowRank.length) return transpose2d(this.forward(transpose2d(xT)) as tf.Tensor2D);
      const y = tf.matMul(streamedWeight(this.weight), xT) as tf.Tensor2D;
      return this.bias ? tf.add<tf.Tensor2D>(y, this.bias.t.reshape([this.outFeatures, 1])) : y;
    });
  }
}
