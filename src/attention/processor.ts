/**
 * The attention seam, as diffusers has it: an attention module owns its weights and delegates the computation
 * to a pluggable processor, so TGATE, chunking or analysis can change how attention runs without touching the
 * models. {@link AttentionModule} is the module side (what every attention can do: attend, finish), shared by
 * diffusers' `Attention` and the CLIP and T5 attentions; {@link AttnProcessor} is the processor side.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../nn/module.js';
import type { Linear } from '../layers/linear.js';
import { attentionProbs, scaledDotProductAttention } from './sdpa.js';

/** Per-call information threaded from the pipeline to every processor (diffusers' cross_attention_kwargs). */
export interface AttnContext {
  /** Denoising step index (0-based, after scheduler warm-up); undefined outside a denoising loop. */
  step?: number;
}

export interface AttnProcessor {
  /**
   * Computes the attention block's output for `hidden` (self-attention when `encoderHidden` is null),
   * including the module's residual connection and output rescale.
   */
  call(attn: AttentionModule, hidden: tf.Tensor, encoderHidden: tf.Tensor | null, bias: tf.Tensor | null, ctx: AttnContext): tf.Tensor;
  /**
   * True when `call` for this module and context will return a stored output without reading the values of
   * `hidden` (only its shape, and its values for a residual connection): a caller may then skip computing
   * the normalised input. Processors that always compute need not implement it.
   */
  reuses?(attn: AttentionModule, cross: boolean, ctx: AttnContext): boolean;
  /** Drops per-generation state (caches); processors without state need not implement it. */
  reset?(): void;
}

/** The four projections of an attention, whatever a model names them (to_q…, q_proj…, q…). */
export interface AttnProjections {
  q: Linear;
  k: Linear;
  v: Linear;
  out: Linear;
}

/**
 * What every attention module shares: a processor, and the computation a processor calls —
 * {@link attend} (the part TGATE caches) and {@link finish} (what follows it). Subclasses name their weights
 * as their checkpoints do and say which are the projections; processors see only this class.
 */
export abstract class AttentionModule extends Module {
  abstract readonly heads: number;
  /** Multiplies q kᵀ: 1/√d in diffusers and CLIP, 1 in T5. */
  abstract readonly scale: number;
  processor: AttnProcessor = DEFAULT_PROCESSOR;

  /** The projections, in the module's own names. */
  protected abstract projections(): AttnProjections;

  /**
   * The projections' inputs: query states and key/value states ([B, N, C]). None by default; diffusers'
   * `Attention` normalises here.
   */
  protected inputs(hidden: tf.Tensor, enc: tf.Tensor | null): { x: tf.Tensor; kv: tf.Tensor } {
    return { x: hidden, kv: enc ?? hidden };
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
   * The attention computation proper — input norms, q/k/v, softmax(q kᵀ·scale + bias) v, out projection —
   * without the residual. This is what TGATE caches and skips. Accepts [B,N,C] or NHWC [B,H,W,C].
   */
  attend(hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null, opts: { queryChunk?: number } = {}): tf.Tensor {
    return tf.tidy(() => {
      const shape4 = hidden.rank === 4 ? hidden.shape : null;
      const h = shape4 ? hidden.reshape([shape4[0], shape4[1] * shape4[2], shape4[3]]) : hidden;
      const { x, kv } = this.inputs(h, enc);
      const p = this.projections();
      const o = scaledDotProductAttention(p.q.forward(x), p.k.forward(kv), p.v.forward(kv),
        { heads: this.heads, scale: this.scale, bias, queryChunk: opts.queryChunk });
      const out = p.out.forward(o);
      return shape4 ? out.reshape(shape4) : out;
    });
  }

  /**
   * The attention probabilities softmax(q kᵀ·scale + bias), [B·heads, Nq, Nk], from the same inputs and
   * projections as {@link attend}. For analysis only: attention itself never materialises them whole.
   */
  probabilities(hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null): tf.Tensor3D {
    return tf.tidy(() => {
      const s = hidden.shape;
      const h = hidden.rank === 4 ? hidden.reshape([s[0], s[1]! * s[2]!, s[3]!]) : hidden;
      const { x, kv } = this.inputs(h, enc);
      const p = this.projections();
      return attentionProbs(p.q.forward(x), p.k.forward(kv), { heads: this.heads, scale: this.scale, bias });
    });
  }

  /**
   * What follows the cached part (kept outside it, as in T-GATE): nothing by default, where the enclosing
   * layer adds the residual; diffusers' `Attention` may add it here and rescale.
   */
  finish(out: tf.Tensor, _residual: tf.Tensor): tf.Tensor {
    return out;
  }
}

/** The default: full attention in one pass (diffusers AttnProcessor2_0). */
export class AttnProcessorDefault implements AttnProcessor {
  call(attn: AttentionModule, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null): tf.Tensor {
    return attn.finish(attn.attend(hidden, enc, bias), hidden);
  }
}

const DEFAULT_PROCESSOR = new AttnProcessorDefault();

/**
 * Memory-lean attention: computes the score matrix a block of query rows at a time so no intermediate
 * exceeds `maxBytes` (on WebGPU, a buffer over maxStorageBufferBindingSize would silently do nothing).
 */
export class AttnProcessorChunked implements AttnProcessor {
  constructor(readonly maxBytes: number) {
    if (!(maxBytes > 0)) throw new Error(`AttnProcessorChunked: maxBytes must be positive, got ${maxBytes}`);
  }
  call(attn: AttentionModule, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null): tf.Tensor {
    const b = hidden.shape[0];
    const nq = hidden.rank === 4 ? hidden.shape[1]! * hidden.shape[2]! : hidden.shape[1]!;
    const nk = enc ? enc.shape[1]! : nq;
    const rowBytes = b * attn.heads * nk * 4;
    const queryChunk = Math.max(1, Math.floor(this.maxBytes / rowBytes));
    if (rowBytes > this.maxBytes) {
      throw new Error(`attention over ${nk} keys needs ${rowBytes} bytes per query row, more than the ${this.maxBytes}-byte limit`);
    }
    return attn.finish(attn.attend(hidden, enc, bias, { queryChunk }), hidden);
  }
}
