/**
 * The kernels that read float16 weights (src/backends/webgpu/half-kernels.ts) against the plain float32 ops
 * given the same half-rounded weights, and tables read in row pieces. Browser-safe: run by the Dawn child
 * (webgpu-half-check.ts) and by headless Chromium (browser-checks.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../src/nn/module.js';
import { Linear } from '../src/layers/linear.js';
import { Conv2d } from '../src/layers/conv.js';
import { Embedding } from '../src/layers/embeddings.js';
import { setPieceBytes } from '../src/nn/packed-weight.js';
import { trackWebgpuBindings } from '../src/backends/index.js';
import { randomNormalHost } from '../src/nn/host-weights.js';
import { decodeStored, encodeStored } from '../src/io/tfjs-quantize.js';
import { relL2 } from '../src/eval/rel-l2.js';

/** float32 values rounded to the nearest half, as float32. */
function halfRounded(v: Float32Array): Float32Array {
  const bytes = new Uint8Array(v.length * 2);
  encodeStored(v, bytes, 'float16');
  return decodeStored(bytes, { name: 'w', shape: [v.length], dtype: 'float32', quantization: { dtype: 'float16' } });
}

/** The same layer twice, float16 and float32, holding the same half-rounded weights. */
function pair<M extends Module>(make: () => M, seed: number): [M, M] {
  const half = make();
  const full = make();
  half.setWeightDtype('float16');
  let s = seed;
  for (const [[, ph], [, pf]] of zip([...half.namedParameters()], [...full.namedParameters()])) {
    const v = randomNormalHost(ph.size, 0.5, s++);
    ph.assign(v);
    pf.assign(ph.dtype === 'float16' ? halfRounded(v) : v);
  }
  return [half, full];
}

function zip<A, B>(a: A[], b: B[]): [A, B][] {
  return a.map((x, i) => [x, b[i]!]);
}

async function compare(half: tf.Tensor, full: tf.Tensor): Promise<number> {
  const e = relL2(await half.data(), await full.data());
  tf.dispose([half, full]);
  return e;
}

/** Each kernel against the float32 ops, and the tables read in pieces (how many each form made, the largest binding). */
export async function halfKernelChecks(): Promise<{ relL2: Record<string, number>; pieces: { float32: number; float16: number; largestBinding: number; over: number } }> {
  const out: Record<string, number> = {};
  const x2 = tf.tensor2d(randomNormalHost(154 * 96, 1, 1), [154, 96]);
  const odd = tf.tensor2d(randomNormalHost(7 * 33, 1, 2), [7, 33]);
  const img = tf.tensor4d(randomNormalHost(2 * 9 * 7 * 8, 1, 3), [2, 9, 7, 8]);
  const layers: [string, () => Module, (m: Module) => tf.Tensor][] = [
    ['Linear 96→40 + bias, 154 rows', () => new Linear(96, 40), (m) => (m as Linear).forward(x2)],
    ['Linear 33→17 without bias (odd sizes)', () => new Linear(33, 17, false), (m) => (m as Linear).forward(odd)],
    ['Conv2d 3×3 pad 1, 8→12', () => new Conv2d(8, 12, 3, 1, 1), (m) => (m as Conv2d).forward(img)],
    ['Conv2d 3×3 stride 2 pad 1, 8→6 (downsampler)', () => new Conv2d(8, 6, 3, 2, 1), (m) => (m as Conv2d).forward(img)],
    ['Conv2d 3×3 unpadded, no bias, 8→5', () => new Conv2d(8, 5, 3, 1, 0, false), (m) => (m as Conv2d).forward(img)],
    ['Conv2d 1×1 (the GEMM), 8→70', () => new Conv2d(8, 70, 1), (m) => (m as Conv2d).forward(img)],
  ];
  for (const [n, [name, make, run]] of layers.entries()) {
    const [h, f] = pair(make, 10 * n);
    out[name] = await compare(run(h), run(f));
    h.dispose();
    f.dispose();
  }
  const ids = tf.tensor2d([[0, 49, 17, 3, 33, 34, 16], [48, 1, 2, 31, 32, 0, 49]], [2, 7], 'int32');
  // 50 rows of 24: pieces of 16 rows in float32 (1536 bytes), 32 in float16.
  setPieceBytes(1536);
  try {
    const [h, f] = pair(() => new Embedding(50, 24), 90);
    trackWebgpuBindings(true, 1536);
    const [yh, yf] = [h.forward(ids), f.forward(ids)];
    await Promise.all([yh.data(), yf.data()]);
    const bound = trackWebgpuBindings(false)!;
    out['Embedding, float16'] = await compare(yh, yf);
    const whole = tf.tidy(() => tf.gather(tf.tensor2d(halfRounded(randomNormalHost(50 * 24, 0.5, 90)), [50, 24]), ids));
    out['Embedding, float32 in 4 row pieces vs one tf.gather'] = await compare(f.forward(ids), whole);
    const pieces = { float32: f.weight.stored.pieces.length, float16: h.weight.stored.pieces.length, largestBinding: bound.largest, over: bound.over.length };
    h.dispose();
    f.dispose();
    return { relL2: out, pieces };
  } finally {
    setPieceBytes(null);
    tf.dispose([x2, odd, img, ids]);
  }
}
