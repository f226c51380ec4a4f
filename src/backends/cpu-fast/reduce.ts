/**
 * Float32 Softmax (last axis) and the Sum / Mean / Max reductions, each at the stock kernels' rounding
 * points and summation order.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { f32, size, stridedCopy, stridesOf, type FastFunc } from './kernel-base.js';

// Local bindings for the hot loops (see common.ts for why).
const F32 = Float32Array;
const fround = Math.fround;
const mexp = Math.exp;

// ---------------------------------------------------------------------------------------- softmax

/** max, x-max (f32), exp (f32), float64 sum rounded to f32, divide: the stock kernel's rounding points. */
export const softmax: FastFunc = ({ inputs, backend, attrs }) => {
  const x = inputs.logits;
  const v = f32(x, backend);
  const r = x.shape.length;
  const dim = attrs?.dim as number;
  if (!v || r === 0 || (dim !== -1 && dim !== r - 1)) return null;
  const n = x.shape[r - 1];
  const out = new F32(v.length);
  if (n === 0) return backend.makeTensorInfo(x.shape.slice(), 'float32', out);
  for (let o = 0; o < v.length; o += n) {
    let m = v[o];
    for (let j = 0; j < n; j++) { const t = v[o + j]; if (t > m || t !== t) m = t; }
    let s = 0;
    for (let j = 0; j < n; j++) { const e = fround(mexp(fround(v[o + j] - m))); out[o + j] = e; s += e; }
    const sf = fround(s);
    for (let j = 0; j < n; j++) out[o + j] = out[o + j] / sf;
  }
  return backend.makeTensorInfo(x.shape.slice(), 'float32', out);
};

// ---------------------------------------------------------------------------------------- reductions

/** Moves the reduced axes innermost (as the stock kernels do) and returns the rows to reduce. */
function reductionRows(x: tf.TensorInfo, v: Float32Array, axisAttr: unknown): { rows: Float32Array; outShape: number[]; keepShape: number[]; n: number } | null {
  const r = x.shape.length;
  const list = axisAttr == null ? [...Array(r).keys()] : Array.isArray(axisAttr) ? (axisAttr as number[]) : [axisAttr as number];
  const axes = list.map((a) => (a < 0 ? a + r : a));
  if (axes.some((a) => a < 0 || a >= r || !Number.isInteger(a)) || new Set(axes).size !== axes.length) return null;
  const kept = [...Array(r).keys()].filter((d) => !axes.includes(d));
  const sorted = [...axes].sort((p, q) => p - q);
  const perm = [...kept, ...sorted];
  const outShape = kept.map((d) => x.shape[d]);
  const keepShape = x.shape.map((s, d) => (axes.includes(d) ? 1 : s));
  const n = size(sorted.map((d) => x.shape[d]));
  let rows = v;
  if (perm.some((p, i) => p !== i)) {
    rows = new F32(v.length);
    const st = stridesOf(x.shape);
    stridedCopy(v, 0, perm.map((p) => x.shape[p]), perm.map((p) => st[p]), rows);
  }
  return { rows, outShape, keepShape, n };
}

function reduce(kind: 'sum' | 'mean' | 'max'): FastFunc {
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x;
    const v = f32(x, backend);
    if (!v) return null;
    const red = reductionRows(x, v, kind === 'max' ? attrs?.reductionIndices : attrs?.axis);
    if (!red) return null;
    const { rows, n } = red;
    const outSize = size(red.outShape);
    if (kind === 'max' && n === 0 && outSize > 0) return null;
    const out = new F32(outSize);
    if (kind === 'max') {
      for (let i = 0, o = 0; i < outSize; i++, o += n) {
        let m = rows[o];
        for (let j = 0; j < n; j++) { const t = rows[o + j]; if (t > m || t !== t) m = t; }
        out[i] = m;
      }
    } else if (kind === 'sum') {
      for (let i = 0, o = 0; i < outSize; i++, o += n) {
        let s = 0;
        for (let j = 0; j < n; j++) s += rows[o + j];
        out[i] = s;
      }
    } else {
      // The stock Mean divides every element by n in float32 first, then sums.
      const nf = fround(n);
      for (let i = 0, o = 0; i < outSize; i++, o += n) {
        let s = 0;
        for (let j = 0; j < n; j++) s += fround(rows[o + j] / nf);
        out[i] = s;
      }
    }
    const keep = (kind === 'max' ? attrs?.keepDims : attrs?.keepDims) as boolean;
    return backend.makeTensorInfo(keep ? red.keepShape : red.outShape, 'float32', out);
  };
}

export const sum = reduce('sum');
export const mean = reduce('mean');
export const max = reduce('max');
