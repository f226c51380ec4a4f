/**
 * What every fast cpu kernel shares: the slice of the cpu backend they see, the kernel signature, typed
 * value access, and the strided copy (with dim collapsing) that layout changes are built from.
 */
import type * as tf from '@tensorflow/tfjs-core';

export type Vals = Float32Array | Int32Array | Uint8Array;
interface CpuData { values?: unknown }
export interface CpuBackend {
  data: { get(id: tf.DataId): CpuData };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Vals): tf.TensorInfo;
  blockSize?: number;
}
export interface Args {
  inputs: Record<string, tf.TensorInfo>;
  backend: CpuBackend;
  attrs?: Record<string, unknown>;
}
/** Returns null to let the stock kernel run. */
export type FastFunc = (args: Args) => tf.TensorInfo | tf.TensorInfo[] | null;

// Hot loops read local bindings (these here, and the same in each kernel file) instead of globals: under
// jest's vm context every global lookup goes through the contextified global's interceptors, which costs
// several times the arithmetic.
const F32 = Float32Array;
const I32 = Int32Array;

export function f32(t: tf.TensorInfo, b: CpuBackend): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = b.data.get(t.dataId).values;
  return v instanceof F32 ? v : null;
}

/** Numeric typed values (float32/int32/bool), or null for strings/complex. */
export function numeric(t: tf.TensorInfo, b: CpuBackend): Vals | null {
  if (t.dtype !== 'float32' && t.dtype !== 'int32' && t.dtype !== 'bool') return null;
  const v = b.data.get(t.dataId).values;
  return v instanceof F32 || v instanceof I32 || v instanceof Uint8Array ? v : null;
}

export function newLike(v: Vals, n: number): Vals {
  return v instanceof F32 ? new F32(n) : v instanceof I32 ? new I32(n) : new Uint8Array(n);
}

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

/**
 * Drops size-1 dims and merges neighbours that are contiguous in every stride list, so the innermost loop
 * runs as long as possible. Returns at least one dim.
 */
export function collapse(shape: number[], strides: number[][]): { shape: number[]; strides: number[][] } {
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
export function stridedCopy(src: Vals, offset: number, shape: number[], strides: number[], dst: Vals): void {
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
