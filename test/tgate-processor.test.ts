/**
 * TgateProcessor inside a transformer block: an attention answered from the cache does not compute the norm
 * that feeds it (T-GATE computes it and throws it away), and skipping it changes nothing in the output.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BasicTransformerBlock } from '../src/layers/transformer.js';
import { TgateProcessor, type TgateContext, type TgateFlags } from '../src/attention/tgate.js';
import { setAttnProcessor } from '../src/attention/registry.js';
import type { LayerNorm } from '../src/layers/norm.js';
import { relL2T, useBackend } from './support/helpers.js';

const CACHE: TgateFlags = { caCache: true, caReuse: false, saCache: true, saReuse: false, keepShape: true };
const REUSE: TgateFlags = { caCache: false, caReuse: true, saCache: false, saReuse: true, keepShape: true };

/** Counts calls of each named norm's forward. */
function countCalls(norms: Record<string, LayerNorm | undefined>): Record<string, number> {
  const calls: Record<string, number> = {};
  for (const [name, norm] of Object.entries(norms)) {
    if (!norm) continue;
    calls[name] = 0;
    const forward = norm.forward.bind(norm);
    norm.forward = ((x: tf.Tensor) => { calls[name]!++; return forward(x); }) as typeof norm.forward;
  }
  return calls;
}

beforeAll(async () => useBackend('cpu'));

test.each(['layer_norm', 'ada_norm_single'] as const)('%s block: reused attentions skip their norms, same output', (normType) => {
  const dim = 32;
  const block = new BasicTransformerBlock({ dim, numAttentionHeads: 4, attentionHeadDim: 8, crossAttentionDim: 24, normType });
  block.initRandom(3, 0.2);
  const proc = new TgateProcessor();
  setAttnProcessor(block, proc);
  const calls = countCalls({ norm1: block.norm1, norm2: block.norm2, norm3: block.norm3 });
  const h = tf.randomNormal([2, 16, dim], 0, 1, 'float32', 1);
  const enc = tf.randomNormal([2, 7, 24], 0, 1, 'float32', 2);
  const timestep = normType === 'ada_norm_single' ? tf.randomNormal([2, 6 * dim], 0, 0.1, 'float32', 3) : null;
  const before = tf.memory().numTensors;

  const computed = block.forward(h, enc, null, { tgate: CACHE } as TgateContext, timestep);
  const afterCompute = { ...calls };
  const reused = block.forward(h, enc, null, { tgate: REUSE } as TgateContext, timestep);

  // PixArt has no norm before cross-attention; its norm2 feeds the feed-forward, like norm3 elsewhere.
  const expected = normType === 'layer_norm' ? { norm1: 1, norm2: 1, norm3: 1 } : { norm1: 1, norm2: 1 };
  expect(afterCompute).toEqual(expected);
  const ff = normType === 'layer_norm' ? 'norm3' : 'norm2';
  expect(calls).toEqual({ ...expected, [ff]: 2 });
  // Both caches were made from this same input, so reusing them reproduces the computed step.
  expect(relL2T(reused, computed)).toBeLessThanOrEqual(1e-7);
  tf.dispose([computed, reused]);
  proc.reset();
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose([h, enc, timestep].filter((t): t is tf.Tensor => t !== null));
  block.dispose();
});
