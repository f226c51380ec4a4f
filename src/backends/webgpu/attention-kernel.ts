/**
 * Fused attention on WebGPU: softmax(q kᵀ·scale + bias) v in one dispatch, f32 throughout, without the
 * [B, heads, Nq, Nk] score matrix. The plain path writes and reads that matrix (1 GiB for SD-1.5's first
 * self-attention at 512², batch 2), and splits it by query rows when it exceeds the binding limit
 * (backends/limits.ts); here no buffer is larger than q, k, v, the bias or the output.
 *
 * One workgroup per (tile of query rows, head, batch). It walks the keys tile by tile with an online softmax
 * (running max m, running sum l, output rescaled by exp(m_old − m_new)), so each tile's scores live only in
 * workgroup memory. G invocations share a query row: each computes the scores of every G-th key of the
 * tile over the full head dimension, then accumulates every G-th vec4 of output channels. q, k, v are read
 * as vec4s in their [B, N, heads·d] layout, so the head split costs no transposes (d must be a multiple of 4,
 * as in every model here; other shapes take the plain path).
 *
 * Exact where it matters: the scores are (q·k)·scale + bias as in the plain path; a masked key (bias −10000
 * or float32 min) gets weight exp(−huge) = 0 once any unmasked key has been seen, and a row whose keys are
 * all masked averages them uniformly, as softmax does. The running max starts at float32 min (finite), so no
 * exp(−inf + inf) can make a NaN.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { MAX_GROUPS, ints, run, tiledProgram, type Uniform } from './program.js';

/** Invocations per workgroup. */
const WG = 64;
/** Floats of workgroup memory for one K and one V tile together (8 KiB; 16 KiB is WebGPU's guaranteed total). */
const KV_TILE_FLOATS = 2048;
/** Largest head dimension handled (the VAE's single 512-wide head); larger ones fall back to the plain path. */
const MAX_HEAD_DIM = 1024;
/**
 * Loop iterations one invocation may run. llvmpipe (Mesa's CPU driver, what CI's Dawn runs on) silently ends
 * an invocation's loops after 65535 iterations in all; so the loops over channels are unrolled when the
 * shader is generated, and a shape whose key loop would still exceed this is left to the plain path.
 */
const LOOP_BUDGET = 60000;

interface Tiling {
  /** Invocations per query row, and query rows per workgroup (g · rows = WG). */
  g: number;
  rows: number;
  /** vec4s of output channels each invocation accumulates. */
  perThread: number;
  /** Keys per tile. */
  keys: number;
}

/** Tile sizes for head dimension d (a multiple of 4): up to 4 vec4s of output per invocation, K+V tiles within 8 KiB. */
export function attentionTiling(d: number): Tiling {
  const d4 = d / 4;
  let g = 1;
  while (g < WG && Math.ceil(d4 / g) > 4) g *= 2;
  return { g, rows: WG / g, perThread: Math.ceil(d4 / g), keys: Math.max(1, Math.min(32, Math.floor(KV_TILE_FLOATS / 2 / d))) };
}

/** Loop iterations per invocation for nk keys: per tile, the lane's score loop, the max loop and the value loop. */
function loopIterations(nk: number, t: Tiling): number {
  return Math.ceil(nk / t.keys) * (2 * t.keys + Math.ceil(t.keys / t.g) + 4);
}

const unroll = (n: number, f: (i: number) => string): string => Array.from({ length: n }, (_, i) => f(i)).join('\n');

function shader(d: number, t: Tiling, hasBias: boolean): string {
  const { g, rows, perThread, keys } = t;
  const d4 = d / 4;
  const bias = hasBias
    ? 'bias[uniforms.biasB * b + uniforms.biasH * h + uniforms.biasQ * min(i, uniforms.nq - 1) + uniforms.biasK * key]'
    : '0.0';
  // Channel vec4 `lane + g·c` of this invocation's row; lanes past the head's end read a valid one and never write.
  const channel = (c: number) => `min(lane + ${g * c}, ${d4 - 1})`;
  return `
var<workgroup> qTile : array<vec4<f32>, ${rows * d4}>;
var<workgroup> kTile : array<vec4<f32>, ${keys * d4}>;
var<workgroup> vTile : array<vec4<f32>, ${keys * d4}>;
var<workgroup> sTile : array<f32, ${rows * keys}>;

fn main(index : i32) {
  let lid = i32(localId.x);
  let r = lid / ${g};
  let lane = lid - r * ${g};
  let h = i32(workgroupId.y);
  let b = i32(workgroupId.z);
  let i0 = i32(workgroupId.x) * ${rows};
  let i = i0 + r;
  let width = uniforms.heads * ${d4};
  let qBase = b * uniforms.nq * width + h * ${d4};
  let kvBase = b * uniforms.nk * width + h * ${d4};
  ${unroll(Math.ceil((rows * d4) / WG), (u) => `{
    let e = lid + ${u * WG};
    let qi = i0 + e / ${d4};
    if (e < ${rows * d4}) {
      var x = vec4<f32>(0.0);
      if (qi < uniforms.nq) { x = q[qBase + qi * width + e % ${d4}]; }
      qTile[e] = x;
    }
  }`)}
  var m = -3.4028234663852886e38;
  var l = 0.0;
  ${unroll(perThread, (c) => `var acc${c} = vec4<f32>(0.0);`)}
  for (var j0 = 0; j0 < uniforms.nk; j0 = j0 + ${keys}) {
    let kn = min(${keys}, uniforms.nk - j0);
    ${unroll(Math.ceil((keys * d4) / WG), (u) => `{
      let e = lid + ${u * WG};
      let key = j0 + e / ${d4};
      if (e < ${keys * d4}) {
        var kx = vec4<f32>(0.0);
        var vx = vec4<f32>(0.0);
        if (key < uniforms.nk) {
          let at = kvBase + key * width + e % ${d4};
          kx = k[at];
          vx = v[at];
        }
        kTile[e] = kx;
        vTile[e] = vx;
      }
    }`)}
    workgroupBarrier();
    for (var j = lane; j < kn; j = j + ${g}) {
      var s = 0.0;
      ${unroll(d4, (c) => `s = s + dot(qTile[r * ${d4} + ${c}], kTile[j * ${d4} + ${c}]);`)}
      let key = j0 + j;
      sTile[r * ${keys} + j] = s * uniforms.scale + ${bias};
    }
    workgroupBarrier();
    var mx = m;
    for (var j = 0; j < kn; j = j + 1) { mx = max(mx, sTile[r * ${keys} + j]); }
    let corr = exp(m - mx);
    l = l * corr;
    ${unroll(perThread, (c) => `acc${c} = acc${c} * corr;`)}
    for (var j = 0; j < kn; j = j + 1) {
      let p = exp(sTile[r * ${keys} + j] - mx);
      l = l + p;
      ${unroll(perThread, (c) => `acc${c} = acc${c} + p * vTile[j * ${d4} + ${channel(c)}];`)}
    }
    m = mx;
    workgroupBarrier();
  }
  if (i < uniforms.nq) {
    ${unroll(perThread, (c) => `if (lane + ${g * c} < ${d4}) { setOutputAtIndex(qBase + i * width + lane + ${g * c}, acc${c} / l); }`)}
  }
}`;
}

/** Element strides of a rank-4 bias broadcast against [B, heads, Nq, Nk] (0 along broadcast axes). */
function broadcastStrides(shape: number[]): number[] {
  const strides = [0, 0, 0, 0];
  let s = 1;
  for (let a = 3; a >= 0; a--) {
    strides[a] = shape[a] === 1 ? 0 : s;
    s *= shape[a]!;
  }
  return strides;
}

/**
 * softmax(q kᵀ·scale + bias) v for q [B, Nq, heads·d], k and v [B, Nk, heads·d], bias rank 4 broadcastable to
 * [B, heads, Nq, Nk]; null (the caller runs the plain path) for shapes outside what one dispatch covers.
 */
export function attentionWebgpu(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, scale: number, bias: tf.Tensor | null): tf.Tensor | null {
  const [b, nq, width] = q.shape as [number, number, number];
  const nk = k.shape[1]!;
  const d = width / heads;
  if (!Number.isInteger(d) || d % 4 !== 0 || d > MAX_HEAD_DIM || nk === 0 || nq === 0) return null;
  if (bias && (bias.rank !== 4 || bias.dtype !== 'float32')) return null;
  const t = attentionTiling(d);
  const groups: [number, number, number] = [Math.ceil(nq / t.rows), heads, b];
  if (groups.some((n) => n > MAX_GROUPS) || loopIterations(nk, t) > LOOP_BUDGET) return null;
  return tf.tidy(() => {
    const flat = (x: tf.Tensor) => x.reshape([x.size]);
    const inputs = [flat(q), flat(k), flat(v), ...(bias ? [flat(bias)] : [])];
    const [sb, sh, sq, sk] = bias ? broadcastStrides(bias.shape) : [0, 0, 0, 0];
    const uniforms: Uniform[] = [...ints(nq, nk, heads, sb!, sh!, sq!, sk!), { type: 'float32', data: [scale] }];
    const program: WebGPUProgram = {
      ...tiledProgram(
        `tgate_attention_${d}_${t.g}_${t.keys}_${!!bias}`, b * nq * width, ['q', 'k', 'v', ...(bias ? ['bias'] : [])],
        'nq : i32, nk : i32, heads : i32, biasB : i32, biasH : i32, biasQ : i32, biasK : i32, scale : f32,', WG, groups,
        shader(d, t, !!bias),
      ),
      // q, k, v and the output as vec4s (d is a multiple of 4), the bias as scalars.
      outputComponent: 4, variableComponents: [4, 4, 4, ...(bias ? [1] : [])],
    };
    return run(program, inputs, uniforms).reshape([b, nq, width]);
  });
}
