/** diffusers `Attention`: weights (to_q/to_k/to_v/to_out.0, optional group_norm and norm_cross) plus a pluggable processor. */
import * as tf from '@tensorflow/tfjs-core';
import { ModuleList } from '../nn/module.js';
import { Linear } from '../layers/linear.js';
import { GroupNorm, LayerNorm } from '../layers/norm.js';
import { AttentionModule, type AttnProjections } from './processor.js';

export interface AttentionOptions {
  queryDim: number;
  crossAttentionDim?: number | null;
  heads?: number;
  dimHead?: number;
  /** Bias on to_q/to_k/to_v (diffusers `bias`). */
  bias?: boolean;
  outBias?: boolean;
  /** Accepted for config fidelity; we compute in fp32, so upcasting changes nothing. */
  upcastAttention?: boolean;
  residualConnection?: boolean;
  rescaleOutputFactor?: number;
  normNumGroups?: number | null;
  eps?: number;
  crossAttentionNorm?: 'layer_norm' | null;
}

export class Attention extends AttentionModule {
  readonly heads: number;
  readonly scale: number;
  readonly isCross: boolean;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: ModuleList<Linear>;
  readonly group_norm?: GroupNorm;
  readonly norm_cross?: LayerNorm;
  readonly residualConnection: boolean;
  readonly rescaleOutputFactor: number;

  constructor(o: AttentionOptions) {
    super();
    const dimHead = o.dimHead ?? 64;
    this.heads = o.heads ?? 8;
    const inner = dimHead * this.heads;
    const kvDim = o.crossAttentionDim ?? o.queryDim;
    this.isCross = o.crossAttentionDim != null;
    this.scale = dimHead ** -0.5;
    this.residualConnection = o.residualConnection ?? false;
    this.rescaleOutputFactor = o.rescaleOutputFactor ?? 1;
    if (o.normNumGroups) this.group_norm = this.child('group_norm', new GroupNorm(o.normNumGroups, o.queryDim, o.eps ?? 1e-5));
    if (o.crossAttentionNorm === 'layer_norm') this.norm_cross = this.child('norm_cross', new LayerNorm(kvDim));
    this.to_q = this.child('to_q', new Linear(o.queryDim, inner, o.bias ?? false));
    this.to_k = this.child('to_k', new Linear(kvDim, inner, o.bias ?? false));
    this.to_v = this.child('to_v', new Linear(kvDim, inner, o.bias ?? false));
    this.to_out = this.child('to_out', new ModuleList([new Linear(inner, o.queryDim, o.outBias ?? true)]));
  }

  protected projections(): AttnProjections {
    return { q: this.to_q, k: this.to_k, v: this.to_v, out: this.to_out.at(0) };
  }

  /** group_norm on the queries' input (self-attention reads keys from it too), norm_cross on encoder states. */
  protected override inputs(hidden: tf.Tensor, enc: tf.Tensor | null): { x: tf.Tensor; kv: tf.Tensor } {
    const x = this.group_norm ? this.group_norm.forward(hidden) : hidden;
    const kv = enc ? (this.norm_cross ? this.norm_cross.forward(enc) : enc) : x;
    return { x, kv };
  }

  /** Applies the residual connection and output rescale (kept outside the cached part, as in T-GATE). */
  override finish(out: tf.Tensor, residual: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = this.residualConnection ? tf.add(out, residual) : out;
      if (this.rescaleOutputFactor !== 1) y = tf.div(y, this.rescaleOutputFactor);
      return y;
    });
  }
}
