/**
 * Fused WebGPU kernels for the elementwise chains a diffusion forward repeats hundreds of times.
 *
 * Through Dawn every dispatch costs ~80–100 µs of CPU (tfjs-webgpu's bookkeeping, then Dawn replaying it as
 * OpenGL calls). As TF.js ops, a resnet's time-embedding add, GroupNorm and SiLU are seven dispatches (add,
 * mean, squared difference, mean, batchNorm, sigmoid, mul) and GEGLU eight (two slices, five for the exact
 * GELU, one mul); here they are one or two and one. On an H100 the GPU side mattered as much: a pass that
 * runs one workgroup per group costs the same at batch 1 as at batch 2, so large groups keep it to the
 * reductions (SDXL 1024², 25-step loops: 29.0 s → 26.4 s baseline, 21.2 s → 18.4 s TGATE; bench/results/
 * h100-webgpu-run3.json and run5.json). The math is the plain ops' (mean, then the mean of squared
 * differences; TF.js's Abramowitz–Stegun erf): only the order of summation differs. Every function takes and
 * returns plain tensors; inputs are viewed flat, so reshapes around them are free. They reach layers through the
 * WebGPU kernel set (./index.ts), and can be turned off there.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import type { GroupNormOptions } from '../kernels.js';
import { ints, run, type Uniform } from './program.js';

/** An elementwise program over a flat output of `size` elements, one invocation per element. */
function flatProgram(key: string, size: number, variableNames: string[], uniforms: string, body: string): WebGPUProgram {
  const workgroupSize: [number, number, number] = [128, 1, 1];
  return {
    shaderKey: key, outputShape: [size], variableNames, uniforms, size: true, workgroupSize,
    dispatchLayout: { x: [0] }, dispatch: [Math.ceil(size / 128), 1, 1],
    getUserCode: () => `${body}\n fn main(index : i32) { if (index < uniforms.size) { setOutputAtIndex(index, value(index)); } }`,
  };
}

// TF.js's Erf kernel (tfjs-backend-webgpu unary_op_util), so erf agrees with the unfused path bit for bit.
const ERF = `
fn erfAS(a : f32) -> f32 {
  let t = 1.0 / (1.0 + ${tf.backend_util.ERF_P} * abs(a));
  return sign(a) * (1.0 - (((((${tf.backend_util.ERF_A5} * t + ${tf.backend_util.ERF_A4}) * t) + ${tf.backend_util.ERF_A3}) * t
    + ${tf.backend_util.ERF_A2}) * t + ${tf.backend_util.ERF_A1}) * t * exp(-abs(a) * abs(a)));
}`;
const SILU = 'fn silu(v : f32) -> f32 { return v * (1.0 / (1.0 + exp(-1.0 * v))); }';

/** WGSL fn `name(v) -> f32`: the sum of v over the workgroup's `wg` invocations, returned to all of them. */
function workgroupSum(name: string, wg: number): string {
  return `
var<workgroup> ${name}Partial : array<f32, ${wg}>;
fn ${name}(v : f32) -> f32 {
  ${name}Partial[localId.x] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s / 2u) {
    if (localId.x < s) { ${name}Partial[localId.x] = ${name}Partial[localId.x] + ${name}Partial[localId.x + s]; }
    workgroupBarrier();
  }
  return ${name}Partial[0];
}`;
}

/**
 * Groups of up to this many elements are normalised in one dispatch; larger ones get a second, fully parallel
 * dispatch for the normalising pass, since one workgroup per group leaves most of the GPU idle (B·G workgroups:
 * 32 for a UNet at batch 1). Env TGATE_WEBGPU_NORM_ONE_DISPATCH_MAX overrides it, for benchmarks.
 */
const ONE_DISPATCH_MAX = Number((typeof process !== 'undefined' ? process.env?.TGATE_WEBGPU_NORM_ONE_DISPATCH_MAX : undefined) ?? 8192);

/** The per-element part of the norm: x (+ addend), normalised with the group's (mean, 1/σ), affine, SiLU. */
function normaliseSnippet(affine: boolean, addend: boolean, silu: boolean): string {
  return `${SILU}
fn element(grp : i32, i : i32) -> f32 {
  let channels = uniforms.numGroups * uniforms.groupChannels;
  return x[i]${addend ? ' + addend[(grp / uniforms.numGroups) * channels + i % channels]' : ''};
}
fn normalised(grp : i32, i : i32, mean : f32, inv : f32) -> f32 {
  var y = (element(grp, i) - mean) * inv;
  ${affine ? 'let ch = i % (uniforms.numGroups * uniforms.groupChannels); y = y * gamma[ch] + beta[ch];' : ''}
  return ${silu ? 'silu(y)' : 'y'};
}`;
}

const NORM_UNIFORMS = 'groups : i32, spatial : i32, numGroups : i32, groupChannels : i32, eps : f32,';

/**
 * One workgroup per (batch, group) of x viewed as [B, M, G, C] (channels last): the mean, then the variance
 * from squared differences (the plain ops' two passes). `stats`: writes (mean, 1/σ) per group, [B·G, 2];
 * otherwise writes the normalised group itself. Workgroups run along x then y, so more than 65535 groups
 * (LayerNorm rows) still fit.
 */
function groupProgram(size: number, groups: number, n: number, stats: boolean, affine: boolean, addend: boolean, silu: boolean): WebGPUProgram {
  const wg = n >= 4096 ? 256 : 64;
  const gx = Math.min(groups, 65535);
  const names = ['x', ...(addend ? ['addend'] : []), ...(affine && !stats ? ['gamma', 'beta'] : [])];
  const write = stats
    ? `if (valid && localId.x == 0u) { setOutputAtIndex(grp * 2, mean); setOutputAtIndex(grp * 2 + 1, inv); }`
    : `for (var k = i32(localId.x); valid && k < n; k = k + ${wg}) { let i = at(grp, k); setOutputAtIndex(i, normalised(grp, i, mean, inv)); }`;
  return {
    shaderKey: `tgate_norm_${stats}_${wg}_${affine}_${addend}_${silu}`, outputShape: [stats ? groups * 2 : size], variableNames: names,
    uniforms: NORM_UNIFORMS, workgroupSize: [wg, 1, 1], dispatchLayout: { x: [0] }, dispatch: [gx, Math.ceil(groups / gx), 1],
    // Each pass reduces in its own workgroup array: sharing one between both passes gave wrong variances on
    // Dawn/GLES (Mesa) with correct means, although a barrier separated the passes.
    getUserCode: () => `${normaliseSnippet(affine && !stats, addend, silu)}
${workgroupSum('sumOf', wg)}
${workgroupSum('sumOfSquares', wg)}
fn at(grp : i32, k : i32) -> i32 {
  let b = grp / uniforms.numGroups;
  let g = grp - b * uniforms.numGroups;
  let m = k / uniforms.groupChannels;
  return ((b * uniforms.spatial + m) * uniforms.numGroups + g) * uniforms.groupChannels + k - m * uniforms.groupChannels;
}
fn main(index : i32) {
  let grp = i32(workgroupId.y) * ${gx} + i32(workgroupId.x);
  let valid = grp < uniforms.groups;
  let n = uniforms.spatial * uniforms.groupChannels;
  var s = 0.0;
  for (var k = i32(localId.x); valid && k < n; k = k + ${wg}) { s = s + element(grp, at(grp, k)); }
  let mean = sumOf(s) / f32(n);
  var q = 0.0;
  for (var k = i32(localId.x); valid && k < n; k = k + ${wg}) { let d = element(grp, at(grp, k)) - mean; q = q + d * d; }
  let inv = inverseSqrt(sumOfSquares(q) / f32(n) + uniforms.eps);
  ${write}
}`,
  };
}

/** The normalising pass over every element in parallel, from the (mean, 1/σ) of {@link groupProgram} `stats`. */
function normaliseProgram(size: number, affine: boolean, addend: boolean, silu: boolean): WebGPUProgram {
  const names = ['x', ...(addend ? ['addend'] : []), 'stats', ...(affine ? ['gamma', 'beta'] : [])];
  const body = `${normaliseSnippet(affine, addend, silu)}
fn value(i : i32) -> f32 {
  let channels = uniforms.numGroups * uniforms.groupChannels;
  let grp = (i / (uniforms.spatial * channels)) * uniforms.numGroups + (i % channels) / uniforms.groupChannels;
  return normalised(grp, i, stats[grp * 2], stats[grp * 2 + 1]);
}`;
  return flatProgram(`tgate_normalise_${affine}_${addend}_${silu}`, size, names, NORM_UNIFORMS, body);
}

/**
 * GroupNorm over x viewed as [B, M, G·C] (channels last): (x − mean) / √(var + eps) · gamma + beta per group
 * of C channels, in one dispatch (two for groups over {@link ONE_DISPATCH_MAX} elements). LayerNorm is the
 * case G = 1, M = 1.
 */
export function groupNormWebgpu(x: tf.Tensor, batch: number, numGroups: number, eps: number, o: GroupNormOptions = {}): tf.Tensor {
  return tf.tidy(() => {
    const channels = x.shape[x.rank - 1]!;
    const groupChannels = channels / numGroups;
    const spatial = x.size / (batch * channels);
    const groups = batch * numGroups;
    const n = spatial * groupChannels;
    // A missing beta is an offset of 0 (torch LayerNorm with bias=False).
    const gamma = o.gamma ?? (o.beta ? tf.ones([channels]) : undefined);
    const beta = o.beta ?? (o.gamma ? tf.zeros([channels]) : undefined);
    const affine = !!gamma;
    const addend = o.addend ?? null;
    if (addend && addend.size !== batch * channels) throw new Error(`norm addend must hold ${batch}×${channels} values, got shape [${addend.shape}]`);
    const xs = [x.reshape([x.size]), ...(addend ? [addend.reshape([addend.size])] : [])];
    const affines = affine ? [gamma!.reshape([channels]), beta!.reshape([channels])] : [];
    const uniforms: Uniform[] = [...ints(groups, spatial, numGroups, groupChannels), { type: 'float32', data: [eps] }];
    const silu = !!o.silu;
    if (n <= ONE_DISPATCH_MAX) return run(groupProgram(x.size, groups, n, false, affine, !!addend, silu), [...xs, ...affines], uniforms).reshape(x.shape);
    const stats = run(groupProgram(x.size, groups, n, true, false, !!addend, false), xs, uniforms);
    return run(normaliseProgram(x.size, affine, !!addend, silu), [...xs, stats, ...affines], uniforms).reshape(x.shape);
  });
}

/** x · sigmoid(x) in one dispatch. */
export function siluWebgpu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const body = `${SILU}\nfn value(i : i32) -> f32 { return silu(x[i]); }`;
    return run(flatProgram('tgate_silu', x.size, ['x'], '', body), [x.reshape([x.size])], []).reshape(x.shape);
  });
}

/** diffusers GEGLU's activation: h = [a, gate] on the last axis → a · GELU(gate) (exact GELU), in one dispatch. */
export function gegluWebgpu(h: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const n = h.shape[h.rank - 1]! / 2;
    const body = `${ERF}
fn value(i : i32) -> f32 {
  let r = i / uniforms.half;
  let j = i - r * uniforms.half;
  let g = h[r * 2 * uniforms.half + uniforms.half + j];
  return h[r * 2 * uniforms.half + j] * (g * 0.5 * (erfAS(g * ${Math.SQRT1_2}) + 1.0));
}`;
    const out = run(flatProgram('tgate_geglu', h.size / 2, ['h'], 'half : i32,', body), [h.reshape([h.size])], [{ type: 'int32', data: [n] }]);
    return out.reshape([...h.shape.slice(0, -1), n]);
  });
}
