/**
 * Data movement kernels (Transpose, non-contiguous Slice, SplitV) for numeric dtypes, as strided copies
 * instead of the stock element-by-element TensorBuffer.get/set.
 */
import * as tf from '@tensorflow/tfjs-core';
import { newLike, numeric, size, stridedCopy, stridesOf, type FastFunc, type Vals } from './kernel-base.js';

// ---------------------------------------------------------------------------------------- data movement

export const transpose: FastFunc = ({ inputs, backend, attrs }) => {
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

export const slice: FastFunc = ({ inputs, backend, attrs }) => {
  const x = inputs.x;
  const v = numeric(x, backend);
  if (!v || x.shape.length === 0) return null;
  const [begin, sz] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, attrs?.begin as number[], attrs?.size as number[]);
  // Contiguous slices are already views in the stock kernel; invalid ones should get its error.
  if (tf.slice_util.isSliceContinous(x.shape, begin, sz)) return null;
  if (begin.some((b, d) => b < 0 || sz[d] < 0 || b + sz[d] > x.shape[d])) return null;
  return backend.makeTensorInfo(sz, x.dtype, sliceValues(x, v, begin, sz));
};

export const splitV: FastFunc = ({ inputs, backend, attrs }) => {
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
