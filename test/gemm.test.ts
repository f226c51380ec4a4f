/**
 * The streamed GEMM strategy (src/layers/gemm.ts, src/nn/streamed-weights.ts): Linear and Conv2d give
 * what TF.js's own matMul/conv2d give, on every test backend, for every padding/stride/kernel the models use;
 * the weight is converted in place (never held twice), exactly, and back; offloading a model that already
 * ran streamed keeps its weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../src/nn/module.js';
import { Linear } from '../src/layers/linear.js';
import { Conv2d } from '../src/layers/conv.js';
import { FeedForward } from '../src/layers/feedforward.js';
import { AUTO_MIN_STREAMED, getGemmStrategy, setGemmStrategy, streamsWeight, streamsWeights, type GemmStrategy } from '../src/layers/gemm.js';
import { weightInOurLayout } from '../src/nn/streamed-weights.js';
import { offloadWeights } from '../src/nn/offload.js';
import { relL2, TEST_BACKENDS, useBackend } from './support/helpers.js';

const TOL = 1e-6;

/** Output values of `f` under strategy `s` (the output disposed). */
function under(s: GemmStrategy, f: () => tf.Tensor): Float32Array {
  setGemmStrategy(s);
  const y = f();
  const v = y.dataSync() as Float32Array;
  y.dispose();
  return v;
}

class Pair extends Module {
  readonly conv: Conv2d;
  readonly lin: Linear;
  constructor() {
    super();
    this.conv = this.child('conv', new Conv2d(8, 16, 3, 1, 1));
    this.lin = this.child('lin', new Linear(16, 24));
  }
  forward(x: tf.Tensor4D): tf.Tensor {
    return tf.tidy(() => this.lin.forward(this.conv.forward(x)));
  }
}

afterAll(() => setGemmStrategy('auto'));

test('TGATE_GEMM picks the initial strategy; unknown names are rejected', () => {
  expect(getGemmStrategy()).toBe((process.env.TGATE_GEMM || 'auto') as GemmStrategy);
  expect(() => setGemmStrategy('fast' as GemmStrategy)).toThrow(/auto, packed, streamed/);
});

describe.each(TEST_BACKENDS)('streamed GEMM on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });
  afterEach(() => setGemmStrategy('auto'));

  test('auto streams on wasm only', () => {
    setGemmStrategy('auto');
    expect(streamsWeights()).toBe(backend === 'wasm');
    setGemmStrategy('packed');
    expect(streamsWeights()).toBe(false);
    setGemmStrategy('streamed');
    expect(streamsWeights()).toBe(true);
  });

  test('auto streams large weights only; a small one keeps our layout', () => {
    setGemmStrategy('auto');
    expect(streamsWeight(AUTO_MIN_STREAMED - 1)).toBe(false);
    expect(streamsWeight(AUTO_MIN_STREAMED)).toBe(backend === 'wasm');
    const small = new Linear(16, 24);
    const large = new Linear(256, AUTO_MIN_STREAMED / 256);
    for (const m of [small, large]) {
      m.initRandom(2, 0.1);
      const x = tf.ones([3, m.inFeatures]);
      m.forward(x).dispose();
      x.dispose();
    }
    expect(small.weight.t.shape).toEqual([16, 24]);
    expect(large.weight.t.shape).toEqual(backend === 'wasm' ? [AUTO_MIN_STREAMED / 256, 256] : [256, AUTO_MIN_STREAMED / 256]);
    small.dispose();
    large.dispose();
  });

  // rows below and above the blocked-transpose threshold, widths that are and are not multiples of 8
  test.each([[1, 12, 20], [7, 64, 96], [130, 40, 13], [70, 96, 64]])('Linear: %i rows, %i → %i', (rows, inF, outF) => {
    const m = new Linear(inF, outF);
    m.initRandom(3, 0.2);
    const x = tf.randomNormal([rows, inF], 0, 1, 'float32', 5);
    const packed = under('packed', () => m.forward(x));
    const streamed = under('streamed', () => m.forward(x));
    expect(relL2(streamed, packed)).toBeLessThan(TOL);
    // batch dims in front of the feature axis
    const x3 = x.reshape([1, rows, inF]);
    expect(relL2(under('streamed', () => m.forward(x3)), packed)).toBeLessThan(TOL);
    tf.dispose([x, x3]);
    m.dispose();
  });

  // [in, out, kernel, stride, padding]: 3×3 same / stride-2 (Downsample2D) / unpadded, 1×1, PixArt's 2×2 patches
  test.each([
    [8, 16, 3, 1, 1], [8, 16, 3, 2, 1], [3, 5, 3, 2, 0], [8, 16, 1, 1, 0], [16, 8, 1, 2, 0], [4, 8, 2, 2, 0], [5, 7, 3, 1, 2],
  ])('Conv2d %i → %i, kernel %i, stride %i, padding %i', (ci, co, k, s, p) => {
    const m = new Conv2d(ci, co, k, s, p);
    m.initRandom(7, 0.2);
    const x = tf.randomNormal([2, 9, 7, ci], 0, 1, 'float32', 9) as tf.Tensor4D;
    const packed = under('packed', () => m.forward(x));
    const streamed = under('streamed', () => m.forward(x));
    expect(relL2(streamed, packed)).toBeLessThan(TOL);
    x.dispose();
    m.dispose();
  });

  test('weights are converted in place, exactly, and back; no tensor or byte is added', () => {
    const m = new Pair();
    m.initRandom(1, 0.2);
    const orig = [m.conv.weight, m.lin.weight].map((p) => Array.from(p.t.dataSync()));
    const x = tf.randomNormal([2, 6, 5, 8], 0, 1, 'float32', 2) as tf.Tensor4D;
    const ref = under('packed', () => m.forward(x));
    const mem = tf.memory();
    expect(relL2(under('streamed', () => m.forward(x)), ref)).toBeLessThan(TOL);
    expect(tf.memory().numTensors).toBe(mem.numTensors);
    expect(tf.memory().numBytes).toBe(mem.numBytes);
    expect(m.lin.weight.t.shape).toEqual([24, 16]);
    expect(m.conv.weight.t.shape).toEqual([16, 72]);
    [m.conv.weight, m.lin.weight].forEach((p, i) => {
      const ours = weightInOurLayout(p);
      expect(ours.shape).toEqual(p.shape);
      expect(Array.from(ours.dataSync())).toEqual(orig[i]);
      ours.dispose();
    });
    // a second streamed forward reuses the converted tensors
    const conv = m.conv.weight.t;
    under('streamed', () => m.forward(x));
    expect(m.conv.weight.t).toBe(conv);
    // and the packed path converts them back
    expect(under('packed', () => m.forward(x))).toEqual(ref);
    expect(m.conv.weight.t.shape).toEqual(m.conv.weight.shape);
    expect(Array.from(m.conv.weight.t.dataSync())).toEqual(orig[0]);
    expect(tf.memory().numTensors).toBe(mem.numTensors);
    x.dispose();
    m.dispose();
  });

  test('Linear.forwardTransposed and the transposed GEGLU FeedForward match the packed path', () => {
    const ff = new FeedForward(24, { mult: 2 });
    ff.initRandom(9, 0.3);
    const lin = new Linear(24, 40);
    lin.initRandom(10, 0.3);
    const x = tf.randomNormal([2, 7, 24], 0, 1, 'float32', 11);
    const xT = tf.tidy(() => x.reshape([14, 24]).transpose()) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const ref = under('packed', () => ff.forward(x));
    const refLin = under('packed', () => tf.tidy(() => lin.forward(x.reshape([14, 24])).transpose()));
    for (const s of ['streamed', 'packed'] as const) {
      expect(relL2(under(s, () => ff.forward(x)), ref)).toBeLessThan(TOL);
      expect(relL2(under(s, () => lin.forwardTransposed(xT)), refLin)).toBeLessThan(TOL);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, xT]);
    ff.dispose();
    lin.dispose();
  });

  test('offloading a model that ran streamed keeps its weights, read back in our layout', () => {
    const m = new Pair();
    m.initRandom(4, 0.2);
    const orig = Array.from(m.lin.weight.t.dataSync());
    const x = tf.randomNormal([1, 4, 4, 8], 0, 1, 'float32', 6) as tf.Tensor4D;
    const ref = under('streamed', () => m.forward(x));
    const h = offloadWeights(m, { unitBytes: 8192 });
    expect(h.units).toEqual(['conv', 'lin']);
    expect(relL2(under('streamed', () => m.forward(x)), ref)).toBeLessThan(TOL);
    h.restore();
    // JS memory kept the converted copy, so the weight comes back streamed; read back, it is the original.
    const back = weightInOurLayout(m.lin.weight);
    expect(Array.from(back.dataSync())).toEqual(orig);
    back.dispose();
    expect(relL2(under('packed', () => m.forward(x)), ref)).toBeLessThan(TOL);
    x.dispose();
    m.dispose();
  });
});
