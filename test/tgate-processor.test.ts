/**
 * TgateProcessor inside a transformer block: an attention answered from the cache does not compute the norm
 * that feeds it (T-GATE computes it and throws it away), and skipping it changes nothing in the output.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BasicTransformerBlock } from '../src/models/transformer-2d.js';
import { TgateProcessor, type TgateContext, type TgateFlags, type TgateOptions } from '../src/attention/tgate.js';
import { beginTgate } from '../src/attention/tgate-session.js';
import { attnProcessors, setAttnProcessor, wrapProcessors } from '../src/attention/registry.js';
import type { AttnProcessor } from '../src/attention/processor.js';
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

// As a pipeline installs TGATE: a fixed gate, or the automatic gate (whose measuring wrapper must keep the
// TGATE processor's `reuses`, or the block computes norms for attentions answered from the cache).
const SESSIONS: [string, 'layer_norm' | 'ada_norm_single', TgateOptions][] = [
  ['layer_norm block, gateStep 10', 'layer_norm', { gateStep: 10 }], ['ada_norm_single block, gateStep 10', 'ada_norm_single', { gateStep: 10 }],
  ['layer_norm block, gateStep auto', 'layer_norm', { gateStep: 'auto' }], ['ada_norm_single block, gateStep auto', 'ada_norm_single', { gateStep: 'auto' }],
];

test.each(SESSIONS)('%s: reused attentions skip their norms, same output', (_name, normType, tgate) => {
  const dim = 32;
  const block = new BasicTransformerBlock({ dim, numAttentionHeads: 4, attentionHeadDim: 8, crossAttentionDim: 24, normType });
  block.initRandom(3, 0.2);
  const defaults = [...attnProcessors(block).values()];
  const before = tf.memory().numTensors;
  const session = beginTgate(block, tgate, 20, true);
  expect(session.autoGate !== undefined).toBe(tgate.gateStep === 'auto');
  const calls = countCalls({ norm1: block.norm1, norm2: block.norm2, norm3: block.norm3 });
  const h = tf.randomNormal([2, 16, dim], 0, 1, 'float32', 1);
  const enc = tf.randomNormal([2, 7, 24], 0, 1, 'float32', 2);
  const timestep = normType === 'ada_norm_single' ? tf.randomNormal([2, 6 * dim], 0, 0.1, 'float32', 3) : null;

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
  tf.dispose([computed, reused, h, enc, timestep].filter((t): t is tf.Tensor => t !== null));
  session.end();
  expect([...attnProcessors(block).values()].every((p, i) => p === defaults[i])).toBe(true);
  expect(tf.memory().numTensors).toBe(before);
  block.dispose();
});

test('wrapProcessors: the wrapper\'s members replace, every other one is the inner processor\'s; restoring undoes it', () => {
  const block = new BasicTransformerBlock({ dim: 8, numAttentionHeads: 2, attentionHeadDim: 4, crossAttentionDim: 6 });
  const log: string[] = [];
  // Methods that need `this`, as class-based processors (TgateProcessor) have.
  const inner: AttnProcessor & { name: string } = {
    name: 'inner',
    call(_attn, hidden) { log.push(`call ${this.name}`); return hidden; },
    reuses(_attn, cross) { log.push(`reuses ${this.name}`); return cross; },
    reset() { log.push(`reset ${this.name}`); },
  };
  const bare: AttnProcessor = { call: (_attn, hidden) => hidden };
  setAttnProcessor(block, { 'attn1.processor': inner, 'attn2.processor': bare });
  const restore = wrapProcessors(block, (p, path) => ({
    call: (attn, hidden, enc, bias, ctx) => { log.push(`wrapped ${path}`); return p.call(attn, hidden, enc, bias, ctx); },
  }));
  const wrapped = attnProcessors(block);
  const w1 = wrapped.get('attn1.processor')!;
  const w2 = wrapped.get('attn2.processor')!;
  expect(w1).not.toBe(inner);
  const x = tf.zeros([1, 2, 8]);
  expect(w1.call(block.attn1, x, null, null, {})).toBe(x);
  expect(block.attn1.reuses(true, {})).toBe(true);
  w1.reset!();
  expect(log).toEqual(['wrapped attn1', 'call inner', 'reuses inner', 'reset inner']);
  // Members the inner processor lacks stay absent: the module's reuses() falls back to false.
  expect(w2.reuses).toBeUndefined();
  expect(w2.reset).toBeUndefined();
  expect(block.attn2!.reuses(true, {})).toBe(false);
  restore();
  expect(attnProcessors(block).get('attn1.processor')).toBe(inner);
  expect(attnProcessors(block).get('attn2.processor')).toBe(bare);
  x.dispose();
});

test('a cache reused at another batch says why: guidance kept after an averaged cache, lcm with guidance, another run', () => {
  const block = new BasicTransformerBlock({ dim: 8, numAttentionHeads: 2, attentionHeadDim: 4, crossAttentionDim: 6 });
  block.initRandom(1, 0.2);
  const proc = new TgateProcessor();
  setAttnProcessor(block, proc);
  const before = tf.memory().numTensors;
  const step = (batch: number, tgate: TgateFlags) => tf.tidy(() => block.forward(tf.ones([batch, 4, 8]), tf.ones([batch, 3, 6]), null, { tgate } as TgateContext));
  const cases: [number, boolean, number, RegExp][] = [
    [2, false, 2, /cached attention output has batch 1 but this step runs batch 2: the cache step averaged the two guidance halves \(tgate.lcm false\), so from the gate on the denoiser must run without guidance/],
    [2, true, 1, /has batch 2 but this step runs batch 1: the cache step kept the whole guidance batch \(tgate.lcm true\), which only works when guidance never runs/],
    [3, true, 1, /has batch 3 but this step runs batch 1: the cache was made by a step of another batch: a TgateProcessor's caches belong to one generation on one model/],
  ];
  for (const [cacheBatch, keepShape, reuseBatch, msg] of cases) {
    step(cacheBatch, { ...CACHE, keepShape }).dispose();
    expect(() => step(reuseBatch, REUSE)).toThrow(msg);
    proc.reset();
  }
  expect(tf.memory().numTensors).toBe(before);
  block.dispose();
});
