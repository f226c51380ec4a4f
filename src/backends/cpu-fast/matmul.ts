/** Float32 BatchMatMul, bit-identical to the stock kernel (same k-blocking and summation order). */
import { f32, size, stridedCopy, type FastFunc } from './kernel-base.js';

// Local bindings for the hot loops (see common.ts for why).
const F32 = Float32Array;
const F64 = Float64Array;
const mmax = Math.max;
const mmin = Math.min;

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
export const batchMatMul: FastFunc = ({ inputs, backend, attrs }) => {
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
