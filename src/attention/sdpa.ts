/**
 * The one implementation of attention math: softmax(q kᵀ · scale + bias) v, used by every model
 * (UNet, PixArt, VAE, CLIP, T5). Inputs and output are [B, N, heads·d] so callers never see the head split.
 */
import * as tf from '@tensorflow/tfjs-core';
// Registers the chained tensor methods (x.reshape() …) used below.
import '../nn/chained-ops.js';
import { attentionQueryChunk } from '../backends/index.js';
import { kernels } from '../backends/kernels.js';
import { contiguousRange } from '../layers/contiguous-range.js';

export interface SdpaOptions {
  heads: number;
  /** Multiplies q kᵀ; diffusers uses 1/√d, T5 uses 1. */
  scale: number;
  /** Additive bias broadcastable to [B, heads, Nq, Nk]; [B, 1, Nk] and [B, Nq, Nk] are lifted to rank 4. */
  bias?: tf.Tensor | null;
  /**
   * Compute at most this many query rows at a time (memory-lean path); undefined = all at once. A fused
   * attention kernel (WebGPU) never holds the scores, so it needs no chunks and ignores this.
   */
  queryChunk?: number;
  /**
   * How heads are computed. 'batched': one batched matMul over [B, heads]; 'per-head': a 2-D matMul per
   * (batch, head) against a pre-transposed K. 'auto' (default) picks per-head on wasm for score matrices of
   * {@link PER_HEAD_MIN_SCORES} elements or more, where batched matMul runs several times slower than 2-D
   * matMul (DESIGN decision 9, bench/attention.ts); below that the per-head ops' fixed costs win. 'auto'
   * runs the backend's fused attention kernel instead where there is one (WebGPU); the other two always run
   * the plain ops.
   */
  strategy?: SdpaStrategy;
}

export type SdpaStrategy = 'auto' | 'batched' | 'per-head';

/**
 * Smallest Nq·Nk that 'auto' computes per head on wasm. bench/attention.ts on an idle 2-core machine (one or two
 * XNNPACK threads): per-head 2.0–3.9× faster at 64 queries (64×64, 64×77), 6.5–8.5× at 256, and 0.3–0.6× as
 * fast at 16×16 (the batched matMul is TF.js's own single-threaded loop; a 2-D matMul is XNNPACK's GEMM).
 */
export const PER_HEAD_MIN_SCORES = 1 << 12;

/** The strategy 'auto' resolves to on the current backend, for a score matrix of nq × nk per head. */
export function resolveSdpaStrategy(s: SdpaStrategy = 'auto', nq = Infinity, nk = Infinity): 'batched' | 'per-head' {
  if (s !== 'auto') return s;
  return kernels().slowBatchedMatMul && nq * nk >= PER_HEAD_MIN_SCORES ? 'per-head' : 'batched';
}

function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, n, c] = x.shape;
  return x.reshape([b, n, heads, c / heads]).transpose([0, 2, 1, 3]);
}

function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [b, h, n, d] = x.shape;
  return x.transpose([0, 2, 1, 3]).reshape([b, n, h * d]);
}

/**
 * diffusers' encoder attention mask as an additive bias: a [B, L] keep-mask (1 keep, 0 drop) becomes
 * (1 − mask)·−10000 shaped [B, 1, L]; a tensor of higher rank is taken to be a bias already.
 */
export function maskToBias(mask: tf.Tensor): tf.Tensor {
  return tf.tidy(() => (mask.rank === 2 ? tf.mul(tf.sub(1, tf.cast(mask, 'float32')), -10000).expandDims(1) : tf.cast(mask, 'float32')));
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

/** Head `k` (= batch · heads + head) of a [B, H, r, c] tensor as [r, c]: contiguous, so one copy of just it. */
function head(t: tf.Tensor4D, k: number): tf.Tensor2D {
  const [, , r, c] = t.shape;
  return contiguousRange(t, k * r * c, [r, c]) as tf.Tensor2D;
}

/**
 * Same math as {@link attendHeads}, one (batch, head) at a time with 2-D matMuls; `kt` is K already
 * transposed to [B, H, d, Nk]. Each head runs in its own tidy so only one score matrix is alive at a time.
 * The scale multiplies q once, not every head's scores (the same product up to rounding).
 */
function attendPerHead(q: tf.Tensor4D, kt: tf.Tensor4D, v: tf.Tensor4D, scale: number, bias?: tf.Tensor | null): tf.Tensor4D {
  const [b, h, nq, d] = q.shape;
  const nk = kt.shape[3];
  const qs = tf.mul(q, scale) as tf.Tensor4D;
  const outs: tf.Tensor2D[] = [];
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < h; j++) {
      outs.push(tf.tidy(() => {
        const qi = head(qs, i * h + j);
        const ki = head(kt, i * h + j);
        const vi = head(v, i * h + j);
        let s: tf.Tensor = tf.matMul(qi, ki);
        if (bias) {
          const [bb, bh, bq] = bias.shape;
          const bi = bias.slice([bb === 1 ? 0 : i, bh === 1 ? 0 : j, 0, 0], [1, 1, bq, nk]).reshape([bq, nk]);
          s = tf.add(s, bi);
        }
        return tf.matMul(tf.softmax(s) as tf.Tensor2D, vi);
      }));
    }
  }
  qs.dispose();
  return tf.stack(outs).reshape([b, h, nq, d]) as tf.Tensor4D;
}

/** softmax(q kᵀ·scale + bias) v over heads; q [B,Nq,H·d], k/v [B,Nk,H·d] → [B,Nq,H·d]. */
export function scaledDotProductAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, opts: SdpaOptions): tf.Tensor3D {
  return tf.tidy(() => {
    const fused = (opts.strategy ?? 'auto') === 'auto' ? kernels().attention : undefined;
    const out = fused?.(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, opts.heads, opts.scale, opts.bias ? liftBias(opts.bias) : null);
    if (out) return out;
    const qh = splitHeads(q, opts.heads);
    const kh = splitHeads(k, opts.heads);
    const vh = splitHeads(v, opts.heads);
    const bias = opts.bias ? liftBias(opts.bias) : null;
    const nq = q.shape[1]!;
    // Without an explicit chunk, split only when the score matrix [B, heads, Nq, Nk] would exceed the device's buffer limit.
    const chunk = opts.queryChunk ?? attentionQueryChunk(qh.shape[0] * opts.heads * kh.shape[2] * 4, nq);
    let attend = attendHeads;
    if (resolveSdpaStrategy(opts.strategy, nq, kh.shape[2]) === 'per-head') {
      const kt = kh.transpose([0, 1, 3, 2]) as tf.Tensor4D;
      attend = (qs, _k, vs, scale, bs) => attendPerHead(qs, kt, vs, scale, bs);
    }
    if (!chunk || chunk >= nq) return mergeHeads(attend(qh, kh, vh, opts.scale, bias));
    const parts: tf.Tensor4D[] = [];
    for (let s = 0; s < nq; s += chunk) {
      const len = Math.min(chunk, nq - s);
      const qs = qh.slice([0, 0, s, 0], [-1, -1, len, -1]);
      const bs = bias && bias.shape[2] !== 1 ? bias.slice([0, 0, s, 0], [-1, -1, len, -1]) : bias;
      parts.push(attend(qs, kh, vh, opts.scale, bs));
    }
    return mergeHeads(tf.concat(parts, 2));
  });
}

/**
 * The attention probabilities softmax(q kᵀ·scale + bias) per head, [B·heads, Nq, Nk] batch-major (diffusers
 * `Attention.get_attention_scores`). For analysis only: the attention itself never materialises this whole.
 */
export function attentionProbs(q: tf.Tensor, k: tf.Tensor, opts: Pick<SdpaOptions, 'heads' | 'scale' | 'bias'>): tf.Tensor3D {
  return tf.tidy(() => {
    const qh = splitHeads(q, opts.heads);
    const kh = splitHeads(k, opts.heads);
    let s: tf.Tensor = tf.mul(tf.matMul(qh, kh, false, true), opts.scale);
    if (opts.bias) s = tf.add(s, liftBias(opts.bias));
    const [b, h, nq, nk] = s.shape;
    return tf.softmax(s).reshape([b * h, nq, nk]) as tf.Tensor3D;
  });
}
