/**
 * The fused WebGPU attention kernel (src/backends/webgpu/attention-kernel.ts) against the reference: the plain
 * sdpa path on the cpu backend, on the shapes and masks the models use, each under a buffer limit low enough
 * that the plain path must split its score matrix. Browser-safe: run in the WebGPU child (test/webgpu-child.ts)
 * and in headless Chromium (test/browser-checks.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { maskToBias, scaledDotProductAttention } from '../src/attention/sdpa.js';
import { initBackend, limitStats, setBufferLimit } from '../src/backends/index.js';
import { MASK_MIN } from '../src/models/text-inputs.js';
import { randomNormalHost } from '../src/nn/host-weights.js';
import { relL2 } from '../src/eval/rel-l2.js';

interface Case {
  name: string;
  b: number; nq: number; nk: number; heads: number; d: number;
  /** Builds the additive bias from plain values (on whichever backend is active). */
  bias?: () => tf.Tensor;
}

/** CLIP's causal mask, with padding of the last `pad[b]` keys of batch row b when given (transformers' layout). */
function causal(b: number, n: number, pad?: number[]): () => tf.Tensor {
  const vals = new Float32Array(b * n * n);
  for (let r = 0; r < b; r++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) if (j > i || (pad && j >= n - pad[r]!)) vals[(r * n + i) * n + j] = MASK_MIN;
    }
  }
  return () => tf.tensor4d(vals, [b, 1, n, n]);
}

/** A [B, L] keep-mask (1 keep) with `valid[b]` leading tokens, as PixArt's encoder_attention_mask. */
function keyMask(valid: number[], n: number): () => tf.Tensor {
  const vals = valid.flatMap((v) => Array.from({ length: n }, (_, j) => (j < v ? 1 : 0)));
  return () => tf.tidy(() => maskToBias(tf.tensor2d(vals, [valid.length, n])));
}

/** T5: a [1, heads, L, L] position bias plus the padding mask [B, 1, 1, L] · float32 min. */
function t5Bias(b: number, heads: number, n: number, valid: number[]): () => tf.Tensor {
  const pos = randomNormalHost(heads * n * n, 2, 77);
  const mask = Float32Array.from(valid.flatMap((v) => Array.from({ length: n }, (_, j) => (j < v ? 0 : MASK_MIN))));
  return () => tf.tidy(() => tf.add(tf.tensor4d(pos, [1, heads, n, n]), tf.tensor4d(mask, [b, 1, 1, n])));
}

export const ATTENTION_CASES: Case[] = [
  { name: 'SD self-attention 16×16 latent, 8 heads × 40', b: 2, nq: 256, nk: 256, heads: 8, d: 40 },
  { name: 'SD-1.5 at 512²: 4096 keys (past llvmpipe\'s 65535-iteration loop cap unless unrolled)', b: 1, nq: 64, nk: 4096, heads: 2, d: 40 },
  { name: 'SD cross-attention, 77 keys', b: 2, nq: 256, nk: 77, heads: 8, d: 40 },
  { name: 'SD deepest level, 8 heads × 160', b: 2, nq: 64, nk: 64, heads: 8, d: 160 },
  { name: 'PixArt self-attention, 16 heads × 72', b: 2, nq: 256, nk: 256, heads: 16, d: 72 },
  { name: 'PixArt masked cross-attention (key mask [B,1,L], 7 and 12 valid)', b: 2, nq: 64, nk: 12, heads: 16, d: 72, bias: keyMask([7, 12], 12) },
  { name: 'CLIP causal mask [1,1,77,77]', b: 2, nq: 77, nk: 77, heads: 12, d: 64, bias: causal(1, 77) },
  { name: 'CLIP causal + padding mask [B,1,77,77]', b: 2, nq: 77, nk: 77, heads: 12, d: 64, bias: causal(2, 77, [0, 30]) },
  { name: 'T5 position bias [1,H,L,L] + padding mask', b: 2, nq: 20, nk: 20, heads: 4, d: 64, bias: t5Bias(2, 4, 20, [20, 9]) },
  { name: 'VAE mid-block, one head × 512', b: 1, nq: 256, nk: 256, heads: 1, d: 512 },
  { name: 'ragged tiles, one batch row fully masked', b: 2, nq: 37, nk: 29, heads: 3, d: 24, bias: keyMask([29, 0], 29) },
];

export interface AttentionReport {
  cases: { name: string; relL2: number; scoreBytes: number; limit: number; plainSplits: number; fusedSplits: number; plainRelL2: number }[];
  leaked: number;
}

/** Runs every case: reference on cpu, then plain-with-split and fused on webgpu under a limit of 1/4 the scores. */
export async function fusedAttentionCheck(): Promise<AttentionReport> {
  const out: AttentionReport['cases'] = [];
  let leaked = 0;
  for (const [n, c] of ATTENTION_CASES.entries()) {
    const width = c.heads * c.d;
    const data = [0, 1, 2].map((s) => randomNormalHost(c.b * (s === 0 ? c.nq : c.nk) * width, 1, 100 * n + s));
    const compute = async (strategy?: 'batched'): Promise<Float32Array> => {
      const [q, k, v] = data.map((x, s) => tf.tensor3d(x, [c.b, s === 0 ? c.nq : c.nk, width]));
      const bias = c.bias?.() ?? null;
      const y = scaledDotProductAttention(q!, k!, v!, { heads: c.heads, scale: c.d ** -0.5, bias, strategy });
      const values = (await y.data()) as Float32Array;
      tf.dispose([q!, k!, v!, y, ...(bias ? [bias] : [])]);
      return values;
    };
    await initBackend('cpu', { quiet: true });
    const ref = await compute('batched');
    await initBackend('webgpu', { quiet: true });
    const before = tf.memory().numTensors;
    const scoreBytes = c.b * c.heads * c.nq * c.nk * 4;
    const limit = Math.ceil(scoreBytes / 4);
    setBufferLimit(limit);
    try {
      const s0 = limitStats.attentionSplits;
      const plain = await compute('batched');
      const s1 = limitStats.attentionSplits;
      const fused = await compute();
      const s2 = limitStats.attentionSplits;
      out.push({ name: c.name, relL2: relL2(fused, ref), scoreBytes, limit, plainSplits: s1 - s0, fusedSplits: s2 - s1, plainRelL2: relL2(plain, ref) });
    } finally {
      setBufferLimit(null);
    }
    leaked += tf.memory().numTensors - before;
  }
  return { cases: out, leaked };
}
