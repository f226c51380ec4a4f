/**
 * Fused WebGPU kernels for the elementwise chains a diffusion forward repeats hundreds of times.
 *
 * Through Dawn a UNet forward is bound by the cost of each dispatch (~80–100 µs), not by arithmetic. As TF.js
 * ops, GroupNorm followed by SiLU is six dispatches (mean, squared difference, mean, batchNorm, sigmoid, mul)
 * and GEGLU eight (two slices, five for the exact GELU, one mul); here they are two and one. The math is the
 * plain ops' (mean, then the mean of squared differences; TF.js's Abramowitz–Stegun erf): only the order of
 * summation differs. Every function takes and returns plain tensors; inputs are viewed flat, so reshapes
 * around them are free.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';

type Uniform = { type: 'int32' | 'float32'; data: number[] };
interface WebgpuBackend {
  runWebGPUProgram(p: WebGPUProgram, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: Uniform[]): tf.TensorInfo;
}

let enabled = (typeof process !== 'undefined' ? process.env?.TGATE_WEBGPU_FUSED : undefined) !== '0';

/**
 * Turns the fused kernels on or off (env TGATE_WEBGPU_FUSED=0 sets off initially), so a benchmark can compare
 * both paths in one run. Other backends never use them.
 */
export function setWebgpuFusedKernels(on: boolean): void {
  enabled = on;
}

/** Whether the fused kernels run now: the WebGPU backend is active and they are enabled. */
export function webgpuFused(): boolean {
  return enabled && tf.getBackend() === 'webgpu';
}

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
 * Per-group mean and variance of x viewed as [B, M, G, C], reduced over M and C: one workgroup per (b, g),
 * output [B·G, 2] as (mean, variance). Two passes over the group inside one dispatch, as the plain ops do.
 */
function momentsProgram(groups: number, n: number): WebGPUProgram {
  const wg = n >= 4096 ? 256 : 64;
  return {
    shaderKey: `tgate_moments_${wg}`, outputShape: [groups * 2], variableNames: ['x'], size: true,
    uniforms: 'groups : i32, spatial : i32, numGroups : i32, groupChannels : i32,',
    workgroupSize: [wg, 1, 1], dispatchLayout: { x: [0] }, dispatch: [groups, 1, 1],
    // Each pass reduces in its own workgroup array: sharing one between both passes gave wrong variances on
    // Dawn/GLES (Mesa) with correct means, although a barrier separated the passes.
    getUserCode: () => `${workgroupSum('sumOf', wg)}
${workgroupSum('sumOfSquares', wg)}
fn element(grp : i32, k : i32) -> f32 {
  let b = grp / uniforms.numGroups;
  let g = grp - b * uniforms.numGroups;
  let m = k / uniforms.groupChannels;
  let c = k - m * uniforms.groupChannels;
  return x[((b * uniforms.spatial + m) * uniforms.numGroups + g) * uniforms.groupChannels + c];
}
fn main(index : i32) {
  let grp = index / ${wg};
  let valid = grp < uniforms.groups;
  let n = uniforms.spatial * uniforms.groupChannels;
  var s = 0.0;
  for (var k = i32(localId.x); valid && k < n; k = k + ${wg}) { s = s + element(grp, k); }
  let mean = sumOf(s) / f32(n);
  var q = 0.0;
  for (var k = i32(localId.x); valid && k < n; k = k + ${wg}) { let d = element(grp, k) - mean; q = q + d * d; }
  let variance = sumOfSquares(q) / f32(n);
  if (valid && localId.x == 0u) {
    setOutputAtIndex(grp * 2, mean);
    setOutputAtIndex(grp * 2 + 1, variance);
  }
}`,
  };
}

function run(program: WebGPUProgram, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  const backend = tf.backend() as unknown as WebgpuBackend;
  const info = backend.runWebGPUProgram(program, inputs, 'float32', uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * GroupNorm over x viewed as [B, M, G·C] (channels last): (x − mean) / √(var + eps) · gamma + beta per group
 * of C channels, then SiLU when `silu`. LayerNorm is the case G = 1, M = 1.
 */
export function groupNormWebgpu(
  x: tf.Tensor, batch: number, numGroups: number, eps: number, gamma?: tf.Tensor, beta?: tf.Tensor, silu = false,
): tf.Tensor {
  return tf.tidy(() => {
    const channels = x.shape[x.rank - 1]!;
    const groupChannels = channels / numGroups;
    const spatial = x.size / (batch * channels);
    const groups = batch * numGroups;
    const flat = x.reshape([x.size]);
    const ints = (...v: number[]): Uniform[] => v.map((d) => ({ type: 'int32', data: [d] }));
    const moments = run(momentsProgram(groups, spatial * groupChannels), [flat], ints(groups, spatial, numGroups, groupChannels));
    const affine = !!(gamma && beta);
    const names = affine ? ['x', 'moments', 'gamma', 'beta'] : ['x', 'moments'];
    const body = `${SILU}
fn value(i : i32) -> f32 {
  let ch = i % (uniforms.numGroups * uniforms.groupChannels);
  let grp = (i / (uniforms.spatial * uniforms.numGroups * uniforms.groupChannels)) * uniforms.numGroups + ch / uniforms.groupChannels;
  var y = (x[i] - moments[grp * 2]) * inverseSqrt(moments[grp * 2 + 1] + uniforms.eps);
  ${affine ? 'y = y * gamma[ch] + beta[ch];' : ''}
  return ${silu ? 'silu(y)' : 'y'};
}`;
    const program = flatProgram(`tgate_groupnorm_${affine}_${silu}`, x.size, names, 'spatial : i32, numGroups : i32, groupChannels : i32, eps : f32,', body);
    const inputs = affine ? [flat, moments, gamma!.reshape([channels]), beta!.reshape([channels])] : [flat, moments];
    const uniforms: Uniform[] = [...ints(spatial, numGroups, groupChannels), { type: 'float32', data: [eps] }];
    return run(program, inputs, uniforms).reshape(x.shape);
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
