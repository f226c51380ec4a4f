/** The attention strategies of src/attention/sdpa.ts must agree: batched vs per-head 2-D matMuls. */
import * as tf from '@tensorflow/tfjs-core';
import { PER_HEAD_MIN_SCORES, scaledDotProductAttention, resolveSdpaStrategy, type SdpaOptions } from '../src/attention/sdpa.js';
import { relL2T, TEST_BACKENDS, useBackend } from './support/helpers.js';

interface Case { name: string; b: number; nq: number; nk: number; heads: number; d: number; bias?: 'mask' | 'full'; chunk?: number }

const CASES: Case[] = [
  { name: 'self', b: 2, nq: 64, nk: 64, heads: 4, d: 8 },
  { name: 'cross', b: 2, nq: 48, nk: 13, heads: 2, d: 16 },
  { name: 'cross + key mask [B,1,Nk]', b: 2, nq: 40, nk: 13, heads: 3, d: 8, bias: 'mask' },
  { name: 'full bias [B,Nq,Nk], chunked', b: 2, nq: 50, nk: 20, heads: 2, d: 8, bias: 'full', chunk: 16 },
  { name: 'one head, batch 1, chunked', b: 1, nq: 33, nk: 33, heads: 1, d: 24, chunk: 10 },
];

describe.each(TEST_BACKENDS)('sdpa strategies on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });

  test.each(CASES)('$name: per-head equals batched within 1e-6', (c) => {
    const c2 = c.heads * c.d;
    const q = tf.randomNormal([c.b, c.nq, c2], 0, 1, 'float32', 1);
    const k = tf.randomNormal([c.b, c.nk, c2], 0, 1, 'float32', 2);
    const v = tf.randomNormal([c.b, c.nk, c2], 0, 1, 'float32', 3);
    let bias: tf.Tensor | null = null;
    if (c.bias === 'mask') {
      const keep = tf.tensor2d(Array.from({ length: c.b * c.nk }, (_, i) => (i % c.nk < c.nk - 1 - (i >= c.nk ? 3 : 0) ? 1 : 0)), [c.b, c.nk]);
      bias = tf.mul(tf.sub(1, keep), -10000).expandDims(1);
      keep.dispose();
    } else if (c.bias === 'full') {
      bias = tf.randomNormal([c.b, c.nq, c.nk], 0, 1, 'float32', 4);
    }
    const opts: SdpaOptions = { heads: c.heads, scale: c.d ** -0.5, bias, queryChunk: c.chunk };
    const before = tf.memory().numTensors;
    const ref = scaledDotProductAttention(q, k, v, { ...opts, strategy: 'batched' });
    const out = scaledDotProductAttention(q, k, v, { ...opts, strategy: 'per-head' });
    expect(out.shape).toEqual([c.b, c.nq, c2]);
    expect(relL2T(out, ref)).toBeLessThan(1e-6);
    tf.dispose([ref, out]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([q, k, v]);
    bias?.dispose();
  });

  test('auto picks per-head on wasm only, and only for large score matrices', () => {
    expect(resolveSdpaStrategy('auto')).toBe(backend === 'wasm' ? 'per-head' : 'batched');
    expect(resolveSdpaStrategy('auto', 256, 77)).toBe(backend === 'wasm' ? 'per-head' : 'batched');
    expect(resolveSdpaStrategy('auto', 64, 77)).toBe(backend === 'wasm' ? 'per-head' : 'batched');
    expect(resolveSdpaStrategy('auto', 16, 77)).toBe('batched');
    expect(resolveSdpaStrategy('auto', 128, PER_HEAD_MIN_SCORES / 128)).toBe(backend === 'wasm' ? 'per-head' : 'batched');
    expect(resolveSdpaStrategy('auto', 128, PER_HEAD_MIN_SCORES / 128 - 1)).toBe('batched');
    expect(resolveSdpaStrategy()).toBe(resolveSdpaStrategy('auto'));
    expect(resolveSdpaStrategy('batched')).toBe('batched');
    expect(resolveSdpaStrategy('per-head', 1, 1)).toBe('per-head');
  });
});
