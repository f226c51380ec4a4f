/**
 * Attention processors, as diffusers has them: an `Attention` module owns its weights and delegates the
 * computation to a pluggable processor, so TGATE, chunking or analysis can change how attention runs
 * without touching the models.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Attention } from './attention.js';

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
  call(attn: Attention, hidden: tf.Tensor, encoderHidden: tf.Tensor | null, bias: tf.Tensor | null, ctx: AttnContext): tf.Tensor;
  /**
   * True when `call` for this module and context will return a stored output without reading the values of
   * `hidden` (only its shape, and its values for a residual connection): a caller may then skip computing
   * the normalised input. Processors that always compute need not implement it.
   */
  reuses?(attn: Attention, cross: boolean, ctx: AttnContext): boolean;
  /** Drops per-generation state (caches); processors without state need not implement it. */
  reset?(): void;
}

/** The default: full attention in one pass (diffusers AttnProcessor2_0). */
export class AttnProcessorDefault implements AttnProcessor {
  call(attn: Attention, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null): tf.Tensor {
    return attn.finish(attn.attend(hidden, enc, bias), hidden);
  }
}

/**
 * Memory-lean attention: computes the score matrix a block of query rows at a time so no intermediate
 * exceeds `maxBytes` (on WebGPU, a buffer over maxStorageBufferBindingSize would silently do nothing).
 */
export class AttnProcessorChunked implements AttnProcessor {
  constructor(readonly maxBytes: number) {
    if (!(maxBytes > 0)) throw new Error(`AttnProcessorChunked: maxBytes must be positive, got ${maxBytes}`);
  }
  call(attn: Attention, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null): tf.Tensor {
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
