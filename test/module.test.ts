/**
 * Module.loadStateDict: strict checks reported together, nothing loaded on failure, PyTorch→ours layout
 * conversion checked by a forward against a hand-written reference; numParameters; dispose.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, StateDictError, type WeightSource } from '../src/nn/module.js';
import { Linear } from '../src/layers/linear.js';
import { Conv2d } from '../src/layers/conv.js';
import { SafetensorsFile, encodeSafetensors } from '../src/io/safetensors.js';
import { SafetensorsWeightSource } from '../src/io/safetensors-weight-source.js';
import { relL2 } from './support/helpers.js';

class Tiny extends Module {
  readonly lin: Linear;
  readonly conv: Conv2d;
  readonly blocks: ModuleList<Linear>;
  constructor() {
    super();
    this.lin = this.child('lin', new Linear(3, 4));
    this.conv = this.child('conv', new Conv2d(2, 3, 3, 1, 1));
    this.blocks = this.child('blocks', new ModuleList([new Linear(4, 2, false)]));
  }
}

function rand(seed: number, n: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 * 2 - 1;
  }
  return out;
}

/** A torch-layout state dict for Tiny. */
function torchWeights(): Record<string, { values: Float32Array; shape: number[] }> {
  return {
    'lin.weight': { values: rand(1, 12), shape: [4, 3] },
    'lin.bias': { values: rand(2, 4), shape: [4] },
    'conv.weight': { values: rand(3, 3 * 2 * 9), shape: [3, 2, 3, 3] },
    'conv.bias': { values: rand(4, 3), shape: [3] },
    'blocks.0.weight': { values: rand(5, 8), shape: [2, 4] },
  };
}

async function sourceOf(w: Record<string, { values: Float32Array; shape: number[] }>, name = 'mem.safetensors'): Promise<SafetensorsWeightSource> {
  return new SafetensorsWeightSource([await SafetensorsFile.fromBytes(encodeSafetensors(w), name)]);
}

test('parameter keys mirror the module tree, numParameters counts them', () => {
  const m = new Tiny();
  expect([...m.namedParameters()].map(([k]) => k)).toEqual(['lin.weight', 'lin.bias', 'conv.weight', 'conv.bias', 'blocks.0.weight']);
  expect([...m.namedModules()].map(([k]) => k)).toEqual(['', 'lin', 'conv', 'blocks', 'blocks.0']);
  expect(m.numParameters()).toBe(3 * 4 + 4 + 3 * 2 * 9 + 3 + 4 * 2);
  // Shapes in our layout; torchShape is what the checkpoint stores.
  const p = new Map(m.namedParameters());
  expect(p.get('lin.weight')!.shape).toEqual([3, 4]);
  expect(p.get('lin.weight')!.torchShape).toEqual([4, 3]);
  expect(p.get('conv.weight')!.shape).toEqual([3, 3, 2, 3]);
  expect(p.get('conv.weight')!.torchShape).toEqual([3, 2, 3, 3]);
  const z = tf.zeros([1, 3]);
  expect(() => m.lin.forward(z)).toThrow(/before weights were loaded/);
  z.dispose();
});

test('missing, unexpected and misshaped keys are reported together, and nothing is loaded', async () => {
  const w = torchWeights();
  delete (w as Record<string, unknown>)['lin.bias'];
  w['extra.weight'] = { values: rand(6, 2), shape: [2] };
  w['conv.weight'] = { values: rand(3, 3 * 2 * 3 * 2), shape: [3, 2, 3, 2] };
  const src = await sourceOf(w, 'bad-weights.safetensors');
  const m = new Tiny();
  const before = tf.memory().numTensors;
  let err: unknown;
  try {
    await m.loadStateDict(src);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StateDictError);
  const e = err as StateDictError;
  expect(e.message).toMatch(/bad-weights\.safetensors/);
  expect(e.message).toMatch(/1 missing, 1 unexpected, 1 misshaped/);
  expect(e.message).toMatch(/missing key: lin\.bias/);
  expect(e.message).toMatch(/unexpected key: extra\.weight/);
  expect(e.message).toMatch(/shape mismatch: conv\.weight expected \[3,2,3,3\] got \[3,2,3,2\]/);
  expect(e.missing).toEqual(['lin.bias']);
  expect(e.unexpected).toEqual(['extra.weight']);
  expect(e.mismatched).toEqual([{ key: 'conv.weight', expected: [3, 2, 3, 3], actual: [3, 2, 3, 2] }]);
  // Not even the well-formed parameters were loaded.
  for (const [, p] of m.namedParameters()) expect(p.value).toBeNull();
  expect(tf.memory().numTensors).toBe(before);
  await src.close();
});

test('a long error list is cut after 40 lines with a count of the rest', async () => {
  class Many extends Module {
    constructor() {
      super();
      for (let i = 0; i < 50; i++) this.child(`l${i}`, new Linear(1, 1, false));
    }
  }
  const src = await sourceOf({});
  await expect(new Many().loadStateDict(src)).rejects.toThrow(/50 missing[\s\S]*missing key: l39\.weight\n {2}… and 10 more$/);
});

test('layout conversion: Linear [out,in]→[in,out] and Conv2d OIHW→HWIO, checked by a forward', async () => {
  const w = torchWeights();
  const src = await sourceOf(w);
  const m = new Tiny();
  const progress: number[] = [];
  await m.loadStateDict(src, { onProgress: (done, total) => progress.push(done / total) });
  await src.close();
  expect(progress).toEqual([0.2, 0.4, 0.6, 0.8, 1]);

  // Linear: y[b,o] = Σ_i x[b,i]·W[o,i] + bias[o] with W in torch layout.
  const x = rand(7, 2 * 3);
  const ref = new Float32Array(2 * 4);
  for (let b = 0; b < 2; b++) {
    for (let o = 0; o < 4; o++) {
      let s = w['lin.bias'].values[o];
      for (let i = 0; i < 3; i++) s += x[b * 3 + i] * w['lin.weight'].values[o * 3 + i];
      ref[b * 4 + o] = s;
    }
  }
  const y = m.lin.forward(tf.tensor2d(x, [2, 3]));
  expect(y.shape).toEqual([2, 4]);
  expect(relL2(y.dataSync(), ref)).toBeLessThan(1e-6);

  // Conv2d: NCHW loop with OIHW weights, padding 1; our output is NHWC.
  const [N, C, H, W, O] = [1, 2, 4, 5, 3];
  const xn = rand(8, N * C * H * W);
  const cw = w['conv.weight'].values;
  const cref = new Float32Array(N * O * H * W);
  for (let o = 0; o < O; o++) {
    for (let yy = 0; yy < H; yy++) {
      for (let xx = 0; xx < W; xx++) {
        let s = w['conv.bias'].values[o];
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < 3; ky++) {
            for (let kx = 0; kx < 3; kx++) {
              const iy = yy + ky - 1;
              const ix = xx + kx - 1;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              s += xn[(c * H + iy) * W + ix] * cw[((o * C + c) * 3 + ky) * 3 + kx];
            }
          }
        }
        cref[(o * H + yy) * W + xx] = s;
      }
    }
  }
  const xin = tf.tensor4d(xn, [N, C, H, W]).transpose([0, 2, 3, 1]) as tf.Tensor4D;
  const cy = m.conv.forward(xin).transpose([0, 3, 1, 2]);
  expect(cy.shape).toEqual([N, O, H, W]);
  expect(relL2(cy.dataSync(), cref)).toBeLessThan(1e-6);
  tf.dispose([y, xin, cy]);
  m.dispose();
});

test('a layout-converted source is loaded as is', async () => {
  const m = new Tiny();
  const shapes = new Map([...m.namedParameters()].map(([k, p]) => [k, p.shape]));
  const src: WeightSource = {
    name: 'converted',
    layoutConverted: true,
    keys: () => [...shapes.keys()],
    shape: (k) => shapes.get(k)!,
    read: async (k) => Float32Array.from({ length: shapes.get(k)!.reduce((a, b) => a * b, 1) }, (_, i) => i),
  };
  await m.loadStateDict(src);
  expect(m.lin.weight.t.shape).toEqual([3, 4]);
  expect(Array.from(m.lin.weight.t.dataSync())).toEqual(Array.from({ length: 12 }, (_, i) => i));
  // Torch-layout shapes are a mismatch for a converted source.
  const wrong: WeightSource = { ...src, shape: (k) => new Map(m.namedParameters()).get(k)!.torchShape };
  const m2 = new Tiny();
  await expect(m2.loadStateDict(wrong)).rejects.toThrow(/shape mismatch: lin\.weight expected \[3,4\] got \[4,3\]/);
  m.dispose();
});

test('dispose frees every parameter tensor; reloading replaces rather than leaks', async () => {
  const before = tf.memory().numTensors;
  const m = new Tiny();
  const src = await sourceOf(torchWeights());
  await m.loadStateDict(src);
  expect(tf.memory().numTensors).toBe(before + 5);
  await m.loadStateDict(src);
  expect(tf.memory().numTensors).toBe(before + 5);
  m.initRandom(3);
  expect(tf.memory().numTensors).toBe(before + 5);
  // Forwards inside tidy leave nothing behind.
  const x = tf.ones([1, 3]);
  const mid = tf.memory().numTensors;
  m.lin.forward(x).dispose();
  m.lin.forward(x).dispose();
  expect(tf.memory().numTensors).toBe(mid);
  x.dispose();
  m.dispose();
  expect(tf.memory().numTensors).toBe(before);
  for (const [, p] of m.namedParameters()) expect(p.value).toBeNull();
  await src.close();
});
