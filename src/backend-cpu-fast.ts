/**
 * Faster kernels for @tensorflow/tfjs-backend-cpu.
 *
 * The stock cpu kernels decompose every output index into coordinates when an operand broadcasts, build
 * Softmax from five separate kernels, and copy non-contiguous slices element by element through
 * TensorBuffer.get/set. For a diffusion UNet that makes one forward take tens of seconds. Each wrapper here
 * handles the common float32 cases with flat strided loops and hands everything else to the original
 * kernel. Values match the originals: the same float64 arithmetic, the same float32 rounding points, the
 * same summation order (BatchMatMul keeps the stock k-blocking).
 */
import * as tf from '@tensorflow/tfjs-core';

type Vals = Float32Array | Int32Array | Uint8Array;
interface CpuData { values?: unknown }
interface CpuBackend {
  data: { get(id: tf.DataId): CpuData };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Vals): tf.TensorInfo;
  blockSize?: number;
}
interface Args {
  inputs: Record<string, tf.TensorInfo>;
  backend: CpuBackend;
  attrs?: Record<string, unknown>;
}
/** Returns null to let the stock kernel run. */
type FastFunc = (args: Args) => tf.TensorInfo | tf.TensorInfo[] | null;

// Hot loops read these bindings instead of globals: under jest's vm context every global lookup goes
// through the contextified global's interceptors, which costs several times the arithmetic.
const F32 = Float32Array;
const F64 = Float64Array;
const I32 = Int32Array;
const fround = Math.fround;
const mexp = Math.exp;
const mmax = Math.max;
const mmin = Math.min;

const MARK = '__tgateFastCpu';

function f32(t: tf.TensorInfo, b: CpuBackend): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = b.data.get(t.dataId).values;
  return v instanceof F32 ? v : null;
}

/** Numeric typed values (float32/int32/bool), or null for strings/complex. */
function numeric(t: tf.TensorInfo, b: CpuBackend): Vals | null {
  if (t.dtype !== 'float32' && t.dtype !== 'int32' && t.dtype !== 'bool') return null;
  const v = b.data.get(t.dataId).values;
  return v instanceof F32 || v instanceof I32 || v instanceof Uint8Array ? v : null;
}

function newLike(v: Vals, n: number): Vals {
  return v instanceof F32 ? new F32(n) : v instanceof I32 ? new I32(n) : new Uint8Array(n);
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

/**
 * Drops size-1 dims and merges neighbours that are contiguous in every stride list, so the innermost loop
 * runs as long as possible. Returns at least one dim.
 */
function collapse(shape: number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const sh: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = sh.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k][last] === s[d] * shape[d])) {
      sh[last] *= shape[d];
      strides.forEach((s, k) => { st[k][last] = s[d]; });
    } else {
      sh.push(shape[d]);
      strides.forEach((s, k) => st[k].push(s[d]));
    }
  }
  if (sh.length === 0) { sh.push(1); st.forEach((s) => s.push(0)); }
  return { shape: sh, strides: st };
}

/** Writes src viewed through (shape, strides, offset) into dst contiguously, row-major. */
function stridedCopy(src: Vals, offset: number, shape: number[], strides: number[], dst: Vals): void {
  const c = collapse(shape, [strides, stridesOf(shape)]);
  const sh = c.shape, ss = c.strides[0], r = sh.length;
  const n = sh[r - 1], s = ss[r - 1];
  const rows = size(sh) / n;
  const idx = new I32(r);
  let src0 = offset, o = 0;
  for (let row = 0; row < rows; row++) {
    if (s === 1) dst.set(src.subarray(src0, src0 + n), o);
    else for (let i = 0; i < n; i++) dst[o + i] = src[src0 + i * s];
    o += n;
    for (let d = r - 2; d >= 0; d--) {
      src0 += ss[d];
      if (++idx[d] < sh[d]) break;
      src0 -= ss[d] * sh[d];
      idx[d] = 0;
    }
  }
}

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

// ---------------------------------------------------------------------------------------- softmax

/** max, x-max (f32), exp (f32), float64 sum rounded to f32, divide: the stock kernel's rounding points. */
const softmax: FastFunc = ({ inputs, backend, attrs }) => {
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

// ---------------------------------------------------------------------------------------- data movement

const transpose: FastFunc = ({ inputs, backend, attrs }) => {
  const x = inputs.x;
  const v = numeric(x, backend);
  const perm = attrs?.perm as number[] | undefined;
  if (!v || !perm || perm.length !== x.shape.length) return null;
  const st = stridesOf(x.shape);
  const shape = perm.map((p) => x.shape[p]);
  const out = newLike(v, v.length);
  if (v.length > 0) stridedCopy(v, 0, shape, perm.map((p) => st[p]), out);
  return backend.makeTensorInfo(shape, x.dtype, out);
};

function sliceValues(x: tf.TensorInfo, v: Vals, begin: number[], sz: number[]): Vals {
  const st = stridesOf(x.shape);
  let off = 0;
  for (let d = 0; d < begin.length; d++) off += begin[d] * st[d];
  const out = newLike(v, size(sz));
  if (out.length > 0) stridedCopy(v, off, sz, st, out);
  return out;
}

const slice: FastFunc = ({ inputs, backend, attrs }) => {
  const x = inputs.x;
  const v = numeric(x, backend);
  if (!v || x.shape.length === 0) return null;
  const [begin, sz] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, attrs?.begin as number[], attrs?.size as number[]);
  // Contiguous slices are already views in the stock kernel; invalid ones should get its error.
  if (tf.slice_util.isSliceContinous(x.shape, begin, sz)) return null;
  if (begin.some((b, d) => b < 0 || sz[d] < 0 || b + sz[d] > x.shape[d])) return null;
  return backend.makeTensorInfo(sz, x.dtype, sliceValues(x, v, begin, sz));
};

const splitV: FastFunc = ({ inputs, backend, attrs }) => {
  const x = inputs.x;
  const v = numeric(x, backend);
  if (!v || x.shape.length === 0) return null;
  const r = x.shape.length;
  let axis = attrs?.axis as number;
  axis = Array.isArray(axis) ? axis[0] : axis;
  if (axis < 0) axis += r;
  if (!(axis >= 0 && axis < r)) return null;
  const spec = attrs?.numOrSizeSplits as number | number[];
  let sizes: number[];
  const len = x.shape[axis];
  if (typeof spec === 'number') {
    if (spec <= 0 || len % spec !== 0) return null;
    sizes = new Array<number>(spec).fill(len / spec);
  } else {
    sizes = spec.slice();
    const neg = sizes.indexOf(-1);
    if (neg >= 0) sizes[neg] = len - sizes.reduce((p, q) => p + q, 1);
    if (sizes.some((s) => s < 0) || sizes.reduce((p, q) => p + q, 0) !== len) return null;
  }
  const begin = new Array<number>(r).fill(0);
  return sizes.map((s) => {
    const sz = x.shape.slice();
    sz[axis] = s;
    const out = sliceValues(x, v, begin, sz);
    begin[axis] += s;
    return backend.makeTensorInfo(sz, x.dtype, out);
  });
};

// ---------------------------------------------------------------------------------------- matmul

/** [batch, R, C] → [batch, C, R], row-major. */
function batchTranspose(v: Float32Array, batch: number, r: number, c: number): Float32Array {
  const out = new F32(batch * r * c);
  if (out.length > 0) stridedCopy(v, 0, [batch, c, r], [r * c, 1, c], out);
  return out;
}

/**
 * Same arithmetic as the stock kernel: per output element, float64 partial sums over k in ascending order
 * within k-blocks of `blockSize`, each block's sum added into the float32 result. Operands are first
 * copied into the layout that makes the innermost loop contiguous: long output rows (N ≥ 16) accumulate
 * a[i,k]·b[k,:] into a float64 row; short ones take dot products of a[i,:] with b[:,j] stored as rows.
 */
const batchMatMul: FastFunc = ({ inputs, backend, attrs }) => {
  const { a, b } = inputs;
  const av0 = f32(a, backend), bv0 = f32(b, backend);
  const bs = backend.blockSize;
  if (!av0 || !bv0 || !bs || a.shape.length < 2 || b.shape.length < 2) return null;
  const tA = !!attrs?.transposeA, tB = !!attrs?.transposeB;
  const ra = a.shape.length, rb = b.shape.length;
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const Kb = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== Kb) return null;
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const ro = mmax(outerA.length, outerB.length);
  const outer: number[] = [];
  for (let d = 0; d < ro; d++) {
    const x = outerA[d - (ro - outerA.length)] ?? 1, y = outerB[d - (ro - outerB.length)] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    outer.push(x === 1 ? y : x);
  }
  const batchA = size(outerA), batchB = size(outerB), batch = mmax(batchA, batchB);
  if (size(outer) !== batch) return null; // broadcasting the stock kernel cannot express; let it decide
  const out = new F32(batch * M * N);
  if (out.length === 0 || K === 0) return backend.makeTensorInfo([...outer, M, N], 'float32', out);
  // a as [M, K] rows.
  const av = tA ? batchTranspose(av0, batchA, K, M) : av0;
  const rowForm = N >= 16;
  // rowForm wants b as [K, N]; dot form wants it as [N, K].
  const bv = rowForm === tB ? batchTranspose(bv0, batchB, tB ? N : K, tB ? K : N) : bv0;
  const acc = new F64(N);
  for (let bi = 0; bi < batch; bi++) {
    const a0 = (bi % batchA) * M * K, b0 = (bi % batchB) * K * N, o0 = bi * M * N;
    for (let i = 0; i < M; i++) {
      const ai = a0 + i * K, oi = o0 + i * N;
      for (let k0 = 0; k0 < K; k0 += bs) {
        const k1 = mmin(k0 + bs, K);
        if (rowForm) {
          // The first k initialises the row (0 + x·b is x·b), saving a fill pass.
          const x0 = av[ai + k0], bk0 = b0 + k0 * N;
          for (let j = 0; j < N; j++) acc[j] = x0 * bv[bk0 + j];
          for (let k = k0 + 1; k < k1; k++) {
            const x = av[ai + k], bk = b0 + k * N;
            for (let j = 0; j < N; j++) acc[j] += x * bv[bk + j];
          }
          // + 0 maps -0 to +0 as the stock kernel's 0 += sum does.
          if (k0 === 0) for (let j = 0; j < N; j++) out[oi + j] = acc[j] + 0;
          else for (let j = 0; j < N; j++) out[oi + j] += acc[j];
        } else {
          for (let j = 0; j < N; j++) {
            const bj = b0 + j * K;
            let s = 0;
            for (let k = k0; k < k1; k++) s += av[ai + k] * bv[bj + k];
            out[oi + j] += s;
          }
        }
      }
    }
  }
  return backend.makeTensorInfo([...outer, M, N], 'float32', out);
};

// ---------------------------------------------------------------------------------------- conv

/**
 * NHWC float32 Conv2D in the stock kernel's loop order and float32 accumulation (so results are
 * bit-identical), with the loop bounds and strides in locals and the unit channel stride specialised.
 */
const conv2D: FastFunc = ({ inputs, backend, attrs }) => {
  const { x, filter } = inputs;
  const xv = f32(x, backend), wv = f32(filter, backend);
  if (!xv || !wv || x.shape.length !== 4 || filter.shape.length !== 4) return null;
  if (attrs?.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') return null;
  const ci = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
    attrs?.strides as [number, number], (attrs?.dilations ?? 1) as [number, number], attrs?.pad as 'same',
    attrs?.dimRoundingMode as 'floor' | undefined, false, 'channelsLast');
  const [B, OH, OW, CO] = ci.outShape;
  const FH = ci.filterHeight, FW = ci.filterWidth, DH = ci.dilationHeight, DW = ci.dilationWidth;
  const SH = ci.strideHeight, SW = ci.strideWidth, PT = ci.padInfo.top, PL = ci.padInfo.left;
  const IH = ci.inHeight, IW = ci.inWidth, CI = ci.inChannels;
  const y = new F32(B * OH * OW * CO);
  const xRow = IW * CI, xBatch = IH * xRow, yRow = OW * CO, yBatch = OH * yRow, wRow = FW * CI * CO;
  for (let b = 0; b < B; b++) {
    for (let yR = 0; yR < OH; yR++) {
      const yo2 = b * yBatch + yR * yRow, xRC = yR * SH - PT;
      for (let wR = 0; wR < FH; wR++) {
        const xR = xRC + wR * DH;
        if (xR < 0 || xR >= IH) continue;
        const wo1 = wR * wRow, xo2 = b * xBatch + xR * xRow;
        for (let yC = 0; yC < OW; yC++) {
          const yo3 = yo2 + yC * CO, xCC = yC * SW - PL;
          for (let wC = 0; wC < FW; wC++) {
            const xC = xCC + wC * DW;
            if (xC < 0 || xC >= IW) continue;
            const xo3 = xo2 + xC * CI;
            let wo3 = wo1 + wC * CI * CO;
            for (let d1 = 0; d1 < CI; d1++) {
              const xVal = xv[xo3 + d1];
              for (let d2 = 0; d2 < CO; d2++) y[yo3 + d2] += xVal * wv[wo3 + d2];
              wo3 += CO;
            }
          }
        }
      }
    }
  }
  return backend.makeTensorInfo([B, OH, OW, CO], 'float32', y);
};

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

// ---------------------------------------------------------------------------------------- install

/** The fast kernels by kernel name; exported for tests that compare them with the stock ones. */
export const FAST_CPU_KERNELS: Record<string, FastFunc> = {
  Add: binary(Op.Add),
  Sub: binary(Op.Sub),
  Multiply: binary(Op.Mul),
  RealDiv: binary(Op.Div),
  Maximum: binary(Op.Max),
  Minimum: binary(Op.Min),
  SquaredDifference: binary(Op.SqDiff),
  Softmax: softmax,
  Sum: reduce('sum'),
  Mean: reduce('mean'),
  Max: reduce('max'),
  Transpose: transpose,
  Slice: slice,
  SplitV: splitV,
  BatchMatMul: batchMatMul,
  Conv2D: conv2D,
  Exp: unary(U.Exp),
  Sigmoid: unary(U.Sigmoid),
  Erf: unary(U.Erf),
  Rsqrt: unary(U.Rsqrt),
  Tanh: unary(U.Tanh),
};

/** Stock cpu kernels replaced by installFastCpuKernels, by name (for tests and debugging). */
export const originalCpuKernels: Record<string, tf.KernelConfig> = {};

/**
 * Wraps the registered cpu kernels with the fast paths above. Idempotent; call after
 * `@tensorflow/tfjs-backend-cpu` is imported. Returns the names of the kernels wrapped by this call.
 */
export function installFastCpuKernels(): string[] {
  const done: string[] = [];
  for (const [name, fast] of Object.entries(FAST_CPU_KERNELS)) {
    const orig = tf.getKernel(name, 'cpu');
    if (!orig || (orig.kernelFunc as unknown as Record<string, unknown>)[MARK]) continue;
    const stock = orig.kernelFunc;
    const kernelFunc = ((args: Args) => fast(args) ?? stock(args as unknown as Parameters<tf.KernelFunc>[0])) as unknown as tf.KernelFunc;
    (kernelFunc as unknown as Record<string, unknown>)[MARK] = true;
    originalCpuKernels[name] = { ...orig };
    tf.unregisterKernel(name, 'cpu');
    tf.registerKernel({ ...orig, kernelFunc });
    done.push(name);
  }
  return done;
}
