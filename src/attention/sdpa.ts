/**
 * The one implementation of attention math: softmax(q kᵀ · scale + bias) v, used by every model
 * (UNet, PixArt, VAE, CLIP, T5). Inputs and output are [B, N, heads·d] so callers never see the head split.
 */
import * as tf from '@tensorflow/tfjs-core';
// Registers the chained tensor methods (x.reshape() …) used below.
import '../nn/module.js';

export interface SdpaOptions {
  heads: number;
  /** Multiplies q kᵀ; diffusers uses 1/√d, T5 uses 1. */
  scale: number;
  /** Additive bias broadcastable to [B, heads, Nq, Nk]; [B, 1, Nk] and [B, Nq, Nk] are lifted to rank 4. */
  bias?: tf.Tensor | null;
  /** Compute at most this many query rows at a time (memory-lean path); undefined = all at once. */
  queryChunk?: number;
}

function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, n, c] = x.shape;
  return x.reshape([b, n, heads, c / heads]).transpose([0, 2, 1, 3]);
}

function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [b, h, n, d] = x.shape;
  return x.transpose([0, 2, 1, 3]).reshape([b, n, h * d]);
}

/** Lifts a bias to rank 4 ([B|1, heads|1, Nq|1, Nk]). */
export function liftBias(bias: tf.Tensor): tf.Tensor {
  if (bias.rank === 4) return bias;
  if (bias.rank === 3) return bias.expandDims(1);
  if (bias.rank === 2) return bias.reshape([bias.shape[0], 1, 1, bias.shape[1]!]);
  throw new Error(`attention bias must have rank 2–4, got shape [${bias.shape}]`);
}

function attendHeads(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, bias?: tf.Tensor | null): tf.Tensor4D {
  let s: tf.Tensor = tf.mul(tf.matMul(q, k, false, true), scale);
  if (bias) s = tf.add(s, bias);
  return tf.matMul(tf.softmax(s), v);
}

/** softmax(q kᵀ·scale + bias) v over heads; q [B,Nq,H·d], k/v [B,Nk,H·d] → [B,Nq,H·d]. */
export function scaledDotProductAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, opts: SdpaOptions): tf.Tensor3D {
  return tf.tidy(() => {
    const qh = splitHeads(q, opts.heads);
    const kh = splitHeads(k, opts.heads);
    const vh = splitHeads(v, opts.heads);
    const bias = opts.bias ? liftBias(opts.bias) : null;
    const nq = q.shape[1]!;
    const chunk = opts.queryChunk;
    if (!chunk || chunk >= nq) return mergeHeads(attendHeads(qh, kh, vh, opts.scale, bias));
    const parts: tf.Tensor4D[] = [];
    for (let s = 0; s < nq; s += chunk) {
      const len = Math.min(chunk, nq - s);
      const qs = qh.slice([0, 0, s, 0], [-1, -1, len, -1]);
      const bs = bias && bias.shape[2] !== 1 ? bias.slice([0, 0, s, 0], [-1, -1, len, -1]) : bias;
      parts.push(attendHeads(qs, kh, vh, opts.scale, bs));
    }
    return mergeHeads(tf.concat(parts, 2));
  });
}
