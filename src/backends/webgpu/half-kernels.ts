/**
 * Kernels that read float16 weights (IEEE halves packed two per int32 element, nn/packed-weight.ts) with f32
 * arithmetic: the GEMM behind Linear and Conv2d, and the gather behind Embedding. Activations stay float32;
 * only the weights' storage (and their reads from memory) halves. `unpack2x16float` is core WGSL, so no
 * device feature is needed.
 *
 * The GEMM is one tiled kernel: 64×64 outputs per workgroup of 256 invocations (4×4 each), the K axis in
 * steps of 16 through workgroup memory. A convolution is the same GEMM over an implicit im2col: output row
 * m = (b, y, x), column k = (ky, kx, c) of HWIO weights viewed as [kh·kw·C, O], the input element read (or 0
 * in the padding) as the tile is loaded; nothing of the im2col is ever written.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MAX_GROUPS, ints, run, tiledProgram } from './program.js';

const TILE = 64;
const TK = 16;
const WG = 256;

/** Element i of the packed halves bound as `name` (array<i32>). */
const HALF = (name: string) => `
fn half(i : i32) -> f32 {
  return unpack2x16float(bitcast<u32>(${name}[i >> 1u]))[i & 1];
}`;

const unroll = (n: number, f: (i: number) => string): string => Array.from({ length: n }, (_, i) => f(i)).join('\n');

/**
 * The tiled GEMM y[M, N] = A[M, K] · W[K, N] (+ bias), A read by `aAt(aRow(m), k)` (plain rows, or the
 * conv's implicit im2col; `aRow` is what depends on the row alone, computed once per row outside the K loop).
 * Output tiles run along x (N) and y/z (M), so M may exceed one dispatch dimension.
 */
function gemmShader(aAt: string, hasBias: boolean, tilesY: number): string {
  return `
var<workgroup> aTile : array<f32, ${TILE * TK}>;
var<workgroup> bTile : array<f32, ${TK * TILE}>;
${HALF('w')}
${aAt}
fn main(index : i32) {
  let lid = i32(localId.x);
  let tx = lid % 16;
  let ty = lid / 16;
  let n0 = i32(workgroupId.x) * ${TILE};
  let m0 = (i32(workgroupId.z) * ${tilesY} + i32(workgroupId.y)) * ${TILE};
  ${unroll(4, (i) => `var acc${i} = vec4<f32>(0.0);`)}
  ${unroll((TILE * TK) / WG, (u) => `let row${u} = aRow(m0 + (lid + ${u * WG}) / ${TK});`)}
  for (var k0 = 0; k0 < uniforms.k; k0 = k0 + ${TK}) {
    ${unroll((TILE * TK) / WG, (u) => `{
      let e = lid + ${u * WG};
      let m = m0 + e / ${TK};
      let kk = k0 + e % ${TK};
      var a = 0.0;
      if (m < uniforms.m && kk < uniforms.k) { a = aAt(row${u}, kk); }
      aTile[e] = a;
      let kb = k0 + e / ${TILE};
      let nb = n0 + e % ${TILE};
      var b = 0.0;
      if (kb < uniforms.k && nb < uniforms.n) { b = half(kb * uniforms.n + nb); }
      bTile[e] = b;
    }`)}
    workgroupBarrier();
    ${unroll(TK, (kk) => `{
      let b = vec4<f32>(bTile[${kk * TILE} + tx * 4], bTile[${kk * TILE} + tx * 4 + 1], bTile[${kk * TILE} + tx * 4 + 2], bTile[${kk * TILE} + tx * 4 + 3]);
      ${unroll(4, (i) => `acc${i} = acc${i} + aTile[(ty * 4 + ${i}) * ${TK} + ${kk}] * b;`)}
    }`)}
    workgroupBarrier();
  }
  ${unroll(4, (i) => `{
    let m = m0 + ty * 4 + ${i};
    for (var j = 0; j < 4; j = j + 1) {
      let n = n0 + tx * 4 + j;
      if (m < uniforms.m && n < uniforms.n) { setOutputAtIndex(m * uniforms.n + n, acc${i}[j]${hasBias ? ' + bias[n]' : ''}); }
    }
  }`)}
}`;
}

function gemm(kind: string, aAt: string, inputs: tf.Tensor[], m: number, n: number, k: number, extra: number[], extraUniforms: string, bias?: tf.Tensor): tf.Tensor {
  const tilesM = Math.ceil(m / TILE);
  const tilesY = Math.min(tilesM, MAX_GROUPS);
  const groups: [number, number, number] = [Math.ceil(n / TILE), tilesY, Math.ceil(tilesM / tilesY)];
  if (groups[0] > MAX_GROUPS) throw new Error(`float16 GEMM: ${n} output columns exceed one dispatch (${MAX_GROUPS * TILE})`);
  const names = ['a', 'w', ...(bias ? ['bias'] : [])];
  const program = tiledProgram(`tgate_gemm_half_${kind}_${!!bias}_${tilesY}`, m * n, names, `m : i32, n : i32, k : i32, ${extraUniforms}`, WG, groups,
    gemmShader(aAt, !!bias, tilesY));
  return run(program, [...inputs, ...(bias ? [bias.reshape([n])] : [])], ints(m, n, k, ...extra));
}

/** x [M, K] · W (+ bias), W [K, N] as packed halves. */
export function matMulHalfWebgpu(x: tf.Tensor2D, w: tf.Tensor, n: number, bias?: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const [m, k] = x.shape;
    if (w.size * 2 < k * n) throw new Error(`float16 weight holds ${w.size * 2} halves, fewer than ${k}×${n}`);
    const aAt = `
fn aRow(m : i32) -> vec3<i32> { return vec3<i32>(m * uniforms.k, 0, 0); }
fn aAt(row : vec3<i32>, kk : i32) -> f32 { return a[row.x + kk]; }`;
    return gemm('mm', aAt, [x.reshape([m * k]), w], m, n, k, [], '', bias).reshape([m, n]) as tf.Tensor2D;
  });
}

/** conv2d(x, W) (+ bias) on NHWC x, W HWIO `filterShape` as packed halves; PyTorch's symmetric zero padding. */
export function conv2dHalfWebgpu(x: tf.Tensor4D, w: tf.Tensor, filterShape: number[], stride: number, pad: number | 'valid', bias?: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, wd, c] = x.shape;
    const [kh, kw, ci, co] = filterShape as [number, number, number, number];
    if (ci !== c) throw new Error(`conv2d: input has ${c} channels, the filter ${ci}`);
    const p = pad === 'valid' ? 0 : pad;
    const ho = Math.floor((h + 2 * p - kh) / stride) + 1;
    const wo = Math.floor((wd + 2 * p - kw) / stride) + 1;
    // Row m = (image, oy, ox): its first input row and column; column k = (tap, channel) of HWIO weights.
    const aAt = `
fn aRow(m : i32) -> vec3<i32> {
  let ox = m % uniforms.wo;
  let rest = m / uniforms.wo;
  let oy = rest % uniforms.ho;
  return vec3<i32>(rest / uniforms.ho * uniforms.h, oy * uniforms.stride - uniforms.pad, ox * uniforms.stride - uniforms.pad);
}
fn aAt(row : vec3<i32>, kk : i32) -> f32 {
  let tap = kk / uniforms.c;
  let ci = kk - tap * uniforms.c;
  let ky = tap / uniforms.kw;
  let iy = row.y + ky;
  let ix = row.z + tap - ky * uniforms.kw;
  if (iy < 0 || iy >= uniforms.h || ix < 0 || ix >= uniforms.w) { return 0.0; }
  return a[((row.x + iy) * uniforms.w + ix) * uniforms.c + ci];
}`;
    const y = gemm('conv', aAt, [x.reshape([x.size]), w], b * ho * wo, co, kh * kw * c, [h, wd, c, ho, wo, kw, stride, p],
      'h : i32, w : i32, c : i32, ho : i32, wo : i32, kw : i32, stride : i32, pad : i32,', bias);
    return y.reshape([b, ho, wo, co]) as tf.Tensor4D;
  });
}

/** Rows `ids` of a packed-halves table piece starting at table row `rowStart` (see BackendKernels.gatherHalf). */
export function gatherHalfWebgpu(table: tf.Tensor, rows: number, dim: number, ids: tf.Tensor, rowStart: number, prev: tf.Tensor | null): tf.Tensor2D {
  return tf.tidy(() => {
    const n = ids.size;
    const size = n * dim;
    const keep = prev ? 'prev[i]' : '0.0';
    const body = `${HALF('table')}
fn main(index : i32) {
  let i = index;
  if (i >= uniforms.size) { return; }
  let t = i / uniforms.dim;
  let row = ids[t] - uniforms.rowStart;
  var v = ${keep};
  if (row >= 0 && row < uniforms.rows) { v = half(row * uniforms.dim + i - t * uniforms.dim); }
  setOutputAtIndex(i, v);
}`;
    const workgroups = Math.ceil(size / 128);
    const gx = Math.min(workgroups, MAX_GROUPS);
    const program = {
      ...tiledProgram(`tgate_gather_half_${!!prev}`, size, ['table', 'ids', ...(prev ? ['prev'] : [])], 'dim : i32, rows : i32, rowStart : i32,', 128,
        [gx, Math.ceil(workgroups / gx), 1], body),
      size: true,
    };
    const inputs = [table, tf.cast(ids.reshape([n]), 'int32'), ...(prev ? [prev.reshape([size])] : [])];
    return run(program, inputs, ints(dim, rows, rowStart)).reshape([n, dim]) as tf.Tensor2D;
  });
}
