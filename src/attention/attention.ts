/** diffusers `Attention`: weights (to_q/to_k/to_v/to_out.0, optional group_norm) plus a pluggable processor. */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Linear } from '../layers/linear.js';
import { GroupNorm, LayerNorm } from '../layers/norm.js';
import { scaledDotProductAttention } from './sdpa.js';
import { AttnProcessorDefault, type AttnContext, type AttnProcessor } from './processor.js';

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

const DEFAULT_PROCESSOR = new AttnProcessorDefault();

export class Attention extends Module {
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
  processor: AttnProcessor = DEFAULT_PROCESSOR;

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

  /** Runs the processor (stateful processors key their state by this module). */
  forward(hidden: tf.Tensor, enc: tf.Tensor | null = null, bias: tf.Tensor | null = null, ctx: AttnContext = {}): tf.Tensor {
    return this.processor.call(this, hidden, enc, bias, ctx);
  }

  /** Whether the processor will answer this call from a cache, so the caller may skip preparing `hidden`. */
  reuses(cross: boolean, ctx: AttnContext): boolean {
    return this.processor.reuses?.(this, cross, ctx) ?? false;
  }

  /**
   * The attention computation proper — group norm, q/k/v, softmax(q kᵀ·scale + bias) v, out projection —
   * without the residual. This is what TGATE caches and skips. Accepts [B,N,C] or NHWC [B,H,W,C].
   */
  attend(hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null, opts: { queryChunk?: number } = {}): tf.Tensor {
    return tf.tidy(() => {
      const shape4 = hidden.rank === 4 ? hidden.shape : null;
      let h = shape4 ? hidden.reshape([shape4[0], shape4[1] * shape4[2], shape4[3]]) : hidden;
      if (this.group_norm) h = this.group_norm.forward(h);
      let kv = enc ?? h;
      if (enc && this.norm_cross) kv = this.norm_cross.forward(enc);
      const q = this.to_q.forward(h);
      const k = this.to_k.forward(kv);
      const v = this.to_v.forward(kv);
      const o = scaledDotProductAttention(q, k, v, { heads: this.heads, scale: this.scale, bias, queryChunk: opts.queryChunk });
      const out = this.to_out.at(0).forward(o);
      return shape4 ? out.reshape(shape4) : out;
    });
  }

  /** Applies the residual connection and output rescale (kept outside the cached part, as in T-GATE). */
  finish(out: tf.Tensor, residual: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = this.residualConnection ? tf.add(out, residual) : out;
      if (this.rescaleOutputFactor !== 1) y = tf.div(y, this.rescaleOutputFactor);
      return y;
    });
  }
}
