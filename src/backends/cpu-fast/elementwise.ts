/**
 * Elementwise float32 kernels. Binary ops broadcast through collapsed stride lists (one flat loop per
 * output row) instead of decomposing each output index; unary ops use the stock formulas in float64,
 * stored as float32.
 */
import * as tf from '@tensorflow/tfjs-core';
import { collapse, f32, size, stridesOf, type FastFunc } from './kernel-base.js';

// Local bindings for the hot loops (see common.ts for why).
const F32 = Float32Array;
const I32 = Int32Array;
const mexp = Math.exp;
const mmax = Math.max;
const mmin = Math.min;

// ---------------------------------------------------------------------------------------- binary ops

const enum Op { Add, Sub, Mul, Div, Max, Min, SqDiff }

/** One row: out[o + i] = op(a[ia + i*sa], b[ib + i*sb]). A loop per op keeps each one monomorphic. */
function row(op: Op, out: Float32Array, o: number, n: number, a: Float32Array, ia: number, sa: number, b: Float32Array, ib: number, sb: number): void {
  switch (op) {
    case Op.Add: for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa] + b[ib + i * sb]; break;
    case Op.Sub: for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa] - b[ib + i * sb]; break;
    case Op.Mul: for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa] * b[ib + i * sb]; break;
    case Op.Div: for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa] / b[ib + i * sb]; break;
    case Op.Max: for (let i = 0; i < n; i++) out[o + i] = mmax(a[ia + i * sa], b[ib + i * sb]); break;
    case Op.Min: for (let i = 0; i < n; i++) out[o + i] = mmin(a[ia + i * sa], b[ib + i * sb]); break;
    case Op.SqDiff: for (let i = 0; i < n; i++) { const d = a[ia + i * sa] - b[ib + i * sb]; out[o + i] = d * d; } break;
  }
}

function binary(op: Op): FastFunc {
  return ({ inputs, backend }) => {
    const { a, b } = inputs;
    const av = f32(a, backend), bv = f32(b, backend);
    if (!av || !bv) return null;
    const ra = a.shape.length, rb = b.shape.length, r = mmax(ra, rb);
    const shape = new Array<number>(r), sa = new Array<number>(r), sb = new Array<number>(r);
    const stA = stridesOf(a.shape), stB = stridesOf(b.shape);
    for (let d = 0; d < r; d++) {
      const da = d - (r - ra), db = d - (r - rb);
      const na = da >= 0 ? a.shape[da] : 1, nb = db >= 0 ? b.shape[db] : 1;
      if (na !== nb && na !== 1 && nb !== 1) return null; // the stock kernel throws the proper error
      shape[d] = mmax(na, nb);
      if (na === 0 || nb === 0) shape[d] = 0;
      sa[d] = na === 1 ? 0 : stA[da];
      sb[d] = nb === 1 ? 0 : stB[db];
    }
    const total = size(shape);
    const out = new F32(total);
    if (total > 0) {
      const c = collapse(shape, [sa, sb]);
      const sh = c.shape, xa = c.strides[0], xb = c.strides[1], cr = sh.length;
      const n = sh[cr - 1], ia1 = xa[cr - 1], ib1 = xb[cr - 1];
      const rows = total / n;
      const idx = new I32(cr);
      let ia = 0, ib = 0, o = 0;
      for (let k = 0; k < rows; k++) {
        row(op, out, o, n, av, ia, ia1, bv, ib, ib1);
        o += n;
        for (let d = cr - 2; d >= 0; d--) {
          ia += xa[d]; ib += xb[d];
          if (++idx[d] < sh[d]) break;
          ia -= xa[d] * sh[d]; ib -= xb[d] * sh[d];
          idx[d] = 0;
        }
      }
    }
    return backend.makeTensorInfo(shape, 'float32', out);
  };
}

export const add = binary(Op.Add);
export const sub = binary(Op.Sub);
export const multiply = binary(Op.Mul);
export const realDiv = binary(Op.Div);
export const maximum = binary(Op.Max);
export const minimum = binary(Op.Min);
export const squaredDifference = binary(Op.SqDiff);

// ---------------------------------------------------------------------------------------- unary

const ERF = tf.backend_util;
const [EP, EA1, EA2, EA3, EA4, EA5] = [ERF.ERF_P, ERF.ERF_A1, ERF.ERF_A2, ERF.ERF_A3, ERF.ERF_A4, ERF.ERF_A5];
const msign = Math.sign, mabs = Math.abs, msqrt = Math.sqrt, mtanh = Math.tanh;

const enum U { Exp, Sigmoid, Erf, Rsqrt, Tanh }

/** Same formulas as the stock unary kernels, evaluated in float64 and stored as float32. */
function unary(op: U): FastFunc {
  return ({ inputs, backend }) => {
    const x = inputs.x;
    const v = f32(x, backend);
    if (!v) return null;
    const n = v.length, out = new F32(n);
    switch (op) {
      case U.Exp: for (let i = 0; i < n; i++) out[i] = mexp(v[i]); break;
      case U.Sigmoid: for (let i = 0; i < n; i++) out[i] = 1 / (1 + mexp(-v[i])); break;
      case U.Rsqrt: for (let i = 0; i < n; i++) out[i] = 1 / msqrt(v[i]); break;
      case U.Tanh: for (let i = 0; i < n; i++) out[i] = mtanh(v[i]); break;
      case U.Erf:
        for (let i = 0; i < n; i++) {
          const xi = v[i], av = mabs(xi), t = 1.0 / (1.0 + EP * av);
          out[i] = msign(xi) * (1.0 - (((((EA5 * t + EA4) * t) + EA3) * t + EA2) * t + EA1) * t * mexp(-av * av));
        }
        break;
    }
    return backend.makeTensorInfo(x.shape.slice(), 'float32', out);
  };
}

export const exp = unary(U.Exp);
export const sigmoid = unary(U.Sigmoid);
export const erf = unary(U.Erf);
export const rsqrt = unary(U.Rsqrt);
export const tanh = unary(U.Tanh);
