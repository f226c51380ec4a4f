/**
 * Each primitive layer against a straightforward float64 JS reference written from the PyTorch/diffusers
 * definitions (NCHW loops for convolutions, so the NHWC/HWIO conversion is checked too), on every test
 * backend. Weights go in through loadStateDict in PyTorch layout.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type WeightSource } from '../src/nn/module.js';
import { Linear } from '../src/layers/linear.js';
import { Conv2d } from '../src/layers/conv.js';
import { GroupNorm, LayerNorm } from '../src/layers/norm.js';
import { silu, gelu, geluTanh, quickGelu, activation } from '../src/layers/activations.js';
import { FeedForward, GeluProjection } from '../src/layers/feedforward.js';
import { timestepEmbedding } from '../src/layers/embeddings.js';
import { Downsample2D, Upsample2D, upsampleNearest2x, ResnetBlock2D } from '../src/layers/resnet.js';
import { scaledDotProductAttention } from '../src/attention/sdpa.js';
import { relL2, TEST_BACKENDS, useBackend } from './support/helpers.js';

const TOL = 1e-5;

// ---------- seeded data ----------

function randn(seed: number, n: number, std = 1): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const u = (): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

type Torch = Record<string, { values: Float32Array; shape: number[] }>;

/** Loads PyTorch-layout weights into a module (an in-memory WeightSource). */
async function load(m: Module, w: Torch): Promise<void> {
  const src: WeightSource = {
    name: 'test-weights',
    keys: () => Object.keys(w),
    shape: (k) => w[k].shape,
    read: async (k) => w[k].values,
  };
  await m.loadStateDict(src);
}

/** Random PyTorch-layout weights for every parameter of `m` (norm weights around 1). */
function randomTorchWeights(m: Module, seed: number): Torch {
  const out: Torch = {};
  let s = seed;
  for (const [k, p] of m.namedParameters()) {
    const shape = p.torchShape;
    const n = shape.reduce((a, b) => a * b, 1);
    const v = randn(s++, n, 0.3);
    if (/norm.*\.weight$/.test(k)) for (let i = 0; i < n; i++) v[i] += 1;
    out[k] = { values: v, shape };
  }
  return out;
}

function nchwToNhwc(x: Float32Array | Float64Array, [n, c, h, w]: number[]): tf.Tensor4D {
  return tf.tidy(() => tf.tensor4d(Float32Array.from(x), [n, c, h, w]).transpose([0, 2, 3, 1]));
}

/** Reads an NHWC tensor back as NCHW values. */
function nhwcToNchw(t: tf.Tensor): Float32Array {
  return tf.tidy(() => t.transpose([0, 3, 1, 2]).dataSync() as Float32Array);
}

/** Runs `fn` twice and checks that it leaves no tensor behind (after disposing its outputs). */
function noLeak<T extends tf.Tensor | tf.Tensor[]>(fn: () => T): T {
  fn();
  const before = tf.memory().numTensors;
  const a = fn();
  tf.dispose(a);
  const b = fn();
  tf.dispose(b);
  const after = tf.memory().numTensors;
  expect(after).toBe(before);
  return fn();
}

// ---------- references (float64, PyTorch semantics, NCHW) ----------

function refLinear(x: Float32Array, rows: number, w: Float32Array, b: Float32Array | null, inF: number, outF: number): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

function refConv(x: Float32Array | Float64Array, [N, C, H, W]: number[], w: Float32Array, b: Float32Array | null, O: number, k: number, stride: number, pad: number): { y: Float64Array; shape: number[] } {
  const Ho = Math.floor((H + 2 * pad - k) / stride) + 1;
  const Wo = Math.floor((W + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(N * O * Ho * Wo);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let s = b ? b[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * stride + ky - pad;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * stride + kx - pad;
                if (ix < 0 || ix >= W) continue;
                s += x[((n * C + c) * H + iy) * W + ix] * w[((o * C + c) * k + ky) * k + kx];
              }
            }
          }
          y[((n * O + o) * Ho + oy) * Wo + ox] = s;
        }
      }
    }
  }
  return { y, shape: [N, O, Ho, Wo] };
}

/** GroupNorm on NCHW (or [B, C, L]) data. */
function refGroupNorm(x: Float32Array | Float64Array, N: number, C: number, L: number, G: number, eps: number, w: Float32Array | null, b: Float32Array | null): Float64Array {
  const y = new Float64Array(x.length);
  const cg = C / G;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      let mean = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) for (let l = 0; l < L; l++) mean += x[(n * C + c) * L + l];
      mean /= cg * L;
      let v = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) for (let l = 0; l < L; l++) v += (x[(n * C + c) * L + l] - mean) ** 2;
      v /= cg * L;
      for (let c = g * cg; c < (g + 1) * cg; c++) {
        for (let l = 0; l < L; l++) {
          const i = (n * C + c) * L + l;
          y[i] = (x[i] - mean) / Math.sqrt(v + eps) * (w ? w[c] : 1) + (b ? b[c] : 0);
        }
      }
    }
  }
  return y;
}

function refLayerNorm(x: Float32Array, rows: number, D: number, eps: number, w: Float32Array | null, b: Float32Array | null): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < D; i++) mean += x[r * D + i];
    mean /= D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[r * D + i] - mean) ** 2;
    v /= D;
    for (let i = 0; i < D; i++) y[r * D + i] = (x[r * D + i] - mean) / Math.sqrt(v + eps) * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return y;
}

/** erf to ~1e-15 (Taylor series near 0, continued fraction for erfc in the tails). */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = 0;
    let term = ax;
    for (let n = 0; n < 100; n++) {
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17) break;
      term *= -ax * ax / (n + 1);
    }
    return Math.sign(x) * 2 / Math.sqrt(Math.PI) * sum;
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

const refSilu = (v: number): number => v / (1 + Math.exp(-v));
const refGelu = (v: number): number => 0.5 * v * (1 + erf(v / Math.SQRT2));
const refGeluTanh = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
const refQuickGelu = (v: number): number => v / (1 + Math.exp(-1.702 * v));

/**
 * diffusers get_timestep_embedding with sin/cos in float64. `torchF32` rounds the exponent, exp, t·freq and
 * scale products to float32 as torch does for its float32 tensors; otherwise everything is exact float64.
 */
function refTimestep(ts: number[], dim: number, flip: boolean, shift: number, scale = 1, maxPeriod = 10000, torchF32 = false): Float64Array {
  const r32 = torchF32 ? Math.fround : (v: number) => v;
  const half = Math.floor(dim / 2);
  const out = new Float64Array(ts.length * dim);
  ts.forEach((t, r) => {
    for (let i = 0; i < half; i++) {
      const exponent = r32(r32(r32(-Math.log(maxPeriod)) * i) / (half - shift));
      const arg = r32(scale * r32(r32(t) * r32(Math.exp(exponent))));
      out[r * dim + i] = flip ? Math.cos(arg) : Math.sin(arg);
      out[r * dim + half + i] = flip ? Math.sin(arg) : Math.cos(arg);
    }
  });
  return out;
}

/** softmax(q kᵀ·scale + bias) v per head; bias given as a function of (b, h, i, j). */
function refAttention(q: Float32Array, k: Float32Array, v: Float32Array, B: number, Nq: number, Nk: number, H: number, d: number, scale: number, bias: ((b: number, h: number, i: number, j: number) => number) | null): Float64Array {
  const C = H * d;
  const out = new Float64Array(B * Nq * C);
  const s = new Float64Array(Nk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Nq; i++) {
        let mx = -Infinity;
        for (let j = 0; j < Nk; j++) {
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q[(b * Nq + i) * C + h * d + e] * k[(b * Nk + j) * C + h * d + e];
          s[j] = dot * scale + (bias ? bias(b, h, i, j) : 0);
          mx = Math.max(mx, s[j]);
        }
        let z = 0;
        for (let j = 0; j < Nk; j++) { s[j] = Math.exp(s[j] - mx); z += s[j]; }
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < Nk; j++) acc += s[j] / z * v[(b * Nk + j) * C + h * d + e];
          out[(b * Nq + i) * C + h * d + e] = acc;
        }
      }
    }
  }
  return out;
}

// ---------- tests ----------

describe.each(TEST_BACKENDS)('layers on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });
  afterAll(async () => { await useBackend('cpu'); });

  test.each([[true], [false]])('Linear (bias %s), rank 2 and rank 3 inputs', async (bias) => {
    const m = new Linear(7, 5, bias);
    const w = randomTorchWeights(m, 11);
    await load(m, w);
    const x = randn(1, 2 * 3 * 7);
    const ref = refLinear(x, 6, w.weight.values, bias ? w.bias.values : null, 7, 5);
    const x3 = tf.tensor3d(x, [2, 3, 7]);
    const x2 = tf.tensor2d(x, [6, 7]);
    const y3 = noLeak(() => m.forward(x3));
    const y2 = m.forward(x2);
    expect(y3.shape).toEqual([2, 3, 5]);
    expect(relL2(y3.dataSync(), ref)).toBeLessThan(TOL);
    expect(relL2(y2.dataSync(), ref)).toBeLessThan(TOL);
    tf.dispose([x3, x2, y3, y2]);
    m.dispose();
  });

  const convCases: [number, number, number][] = [];
  for (const k of [1, 3]) for (const s of [1, 2]) for (const p of [0, 1]) convCases.push([k, s, p]);
  test.each(convCases)('Conv2d kernel %i stride %i padding %i (PyTorch NCHW reference)', async (k, s, p) => {
    const [N, C, H, W, O] = [2, 3, 7, 6, 4];
    const m = new Conv2d(C, O, k, s, p);
    const w = randomTorchWeights(m, 20 + k * 4 + s * 2 + p);
    await load(m, w);
    const x = randn(2, N * C * H * W);
    const ref = refConv(x, [N, C, H, W], w.weight.values, w.bias.values, O, k, s, p);
    const xin = nchwToNhwc(x, [N, C, H, W]);
    const y = noLeak(() => m.forward(xin));
    expect([y.shape[0], y.shape[3], y.shape[1], y.shape[2]]).toEqual(ref.shape);
    expect(relL2(nhwcToNchw(y), ref.y)).toBeLessThan(TOL);
    tf.dispose([xin, y]);
    m.dispose();
  });

  test('Conv2d without bias', async () => {
    const m = new Conv2d(2, 3, 3, 1, 1, false);
    const w = randomTorchWeights(m, 30);
    expect(Object.keys(w)).toEqual(['weight']);
    await load(m, w);
    const x = randn(3, 1 * 2 * 5 * 5);
    const ref = refConv(x, [1, 2, 5, 5], w.weight.values, null, 3, 3, 1, 1);
    const xin = nchwToNhwc(x, [1, 2, 5, 5]);
    const y = m.forward(xin);
    expect(relL2(nhwcToNchw(y), ref.y)).toBeLessThan(TOL);
    tf.dispose([xin, y]);
    m.dispose();
  });

  test.each([[true, 1e-5], [false, 1e-6], [true, 1e-2]])('GroupNorm (affine %s, eps %f) on NHWC and [B, N, C]', async (affine, eps) => {
    const [N, C, H, W, G] = [2, 8, 5, 3, 4];
    const m = new GroupNorm(G, C, eps, affine);
    const w = randomTorchWeights(m, 40);
    if (affine) await load(m, w);
    // An offset mean and a small spread so eps matters.
    const x = randn(4, N * C * H * W, 0.2).map((v) => v + 3);
    const ref = refGroupNorm(x, N, C, H * W, G, eps, affine ? w.weight.values : null, affine ? w.bias.values : null);
    const xin = nchwToNhwc(x, [N, C, H, W]);
    const y = noLeak(() => m.forward(xin));
    expect(relL2(nhwcToNchw(y), ref)).toBeLessThan(TOL);
    // [B, N, C] (sequence) input: same statistics over the tokens.
    const xs = tf.tidy(() => xin.reshape([N, H * W, C]));
    const ys = m.forward(xs);
    expect(relL2(tf.tidy(() => ys.transpose([0, 2, 1]).dataSync()), ref)).toBeLessThan(TOL);
    tf.dispose([xin, y, xs, ys]);
    m.dispose();
  });

  test('GroupNorm rejects channels not divisible into groups', () => {
    expect(() => new GroupNorm(3, 8)).toThrow(/8 channels are not divisible into 3 groups/);
  });

  test.each([[true, true, 1e-5], [true, false, 1e-6], [false, false, 1e-6]])('LayerNorm (affine %s, bias %s, eps %f)', async (affine, bias, eps) => {
    const [R, D] = [2 * 5, 16];
    const m = new LayerNorm(D, eps, affine, bias);
    const w = randomTorchWeights(m, 50);
    expect(Object.keys(w).length).toBe(affine ? (bias ? 2 : 1) : 0);
    if (affine) await load(m, w);
    const x = randn(5, R * D, 0.05).map((v, i) => v + (i % 3));
    const ref = refLayerNorm(x, R, D, eps, affine ? w.weight.values : null, affine && bias ? w.bias.values : null);
    const xin = tf.tensor3d(x, [2, 5, D]);
    const y = noLeak(() => m.forward(xin));
    expect(relL2(y.dataSync(), ref)).toBeLessThan(TOL);
    tf.dispose([xin, y]);
    m.dispose();
  });

  test.each([
    ['silu', silu, refSilu], ['gelu', gelu, refGelu], ['gelu_tanh', geluTanh, refGeluTanh], ['quick_gelu', quickGelu, refQuickGelu],
  ] as const)('%s', (name, fn, ref) => {
    const x = randn(6, 4000, 3);
    const xt = tf.tensor1d(x);
    const y = noLeak(() => fn(xt));
    expect(relL2(y.dataSync(), Array.from(x, ref))).toBeLessThan(TOL);
    const y2 = activation(name)(xt);
    expect(Array.from(y2.dataSync())).toEqual(Array.from(y.dataSync()));
    tf.dispose([xt, y, y2]);
  });

  test('activation() names the unsupported one', () => {
    expect(() => activation('swiglu')).toThrow(/unsupported activation "swiglu"/);
  });

  test.each(['geglu', 'gelu', 'gelu-approximate'] as const)('FeedForward %s (net.0.proj → act → net.2)', async (act) => {
    const [dim, inner, dimOut] = [6, 10, 4];
    const m = new FeedForward(dim, { innerDim: inner, activationFn: act, dimOut });
    const w = randomTorchWeights(m, 60);
    expect(Object.keys(w).sort()).toEqual(['net.0.proj.bias', 'net.0.proj.weight', 'net.2.bias', 'net.2.weight']);
    expect(w['net.0.proj.weight'].shape).toEqual([act === 'geglu' ? 2 * inner : inner, dim]);
    await load(m, w);
    const rows = 2 * 7;
    const x = randn(7, rows * dim);
    const projOut = act === 'geglu' ? 2 * inner : inner;
    const h = refLinear(x, rows, w['net.0.proj.weight'].values, w['net.0.proj.bias'].values, dim, projOut);
    const a = new Float32Array(rows * inner);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < inner; i++) {
        if (act === 'geglu') a[r * inner + i] = h[r * projOut + i] * refGelu(h[r * projOut + inner + i]);
        else a[r * inner + i] = (act === 'gelu' ? refGelu : refGeluTanh)(h[r * projOut + i]);
      }
    }
    const ref = refLinear(a, rows, w['net.2.weight'].values, w['net.2.bias'].values, inner, dimOut);
    const xt = tf.tensor3d(x, [2, 7, dim]);
    const y = noLeak(() => m.forward(xt));
    expect(y.shape).toEqual([2, 7, dimOut]);
    expect(relL2(y.dataSync(), ref)).toBeLessThan(TOL);
    // GeluProjection alone is net.0.
    const gp = new GeluProjection(dim, inner, act);
    await load(gp, { 'proj.weight': w['net.0.proj.weight'], 'proj.bias': w['net.0.proj.bias'] });
    const g = gp.forward(xt);
    expect(relL2(g.dataSync(), a)).toBeLessThan(TOL);
    tf.dispose([xt, y, g]);
    m.dispose();
    gp.dispose();
  });

  test('FeedForward rejects an unsupported activation', () => {
    expect(() => new FeedForward(4, { activationFn: 'swiglu' })).toThrow(/unsupported activation_fn "swiglu"/);
  });

  const tsCases: [boolean, number][] = [[true, 0], [true, 1], [false, 0], [false, 1]];
  test.each(tsCases)('sinusoidal timestep embedding flip_sin_to_cos %s, downscale_freq_shift %i, t up to 999', (flip, shift) => {
    const small = [0, 1, 2, 37, 64, 100];
    const large = [0, 1, 37, 500, 981, 999];
    for (const dim of [320, 256, 7]) {
      // Exact math in float64: small timesteps within 1e-5.
      const es = timestepEmbedding(small, dim, { flipSinToCos: flip, downscaleFreqShift: shift });
      expect(es.shape).toEqual([small.length, dim]);
      expect(relL2(es.dataSync(), refTimestep(small, dim, flip, shift))).toBeLessThan(TOL);
      // Up to t = 999 the argument t·freq is near 1000, where float32 (torch's dtype for this computation)
      // has a spacing of 6e-5: torch itself is ~1.2e-5 from exact math there. We follow torch's roundings,
      // so: within 1e-6 of a float64 evaluation of torch's float32 argument, within 3e-5 of exact math.
      const el = timestepEmbedding(large, dim, { flipSinToCos: flip, downscaleFreqShift: shift });
      expect(relL2(el.dataSync(), refTimestep(large, dim, flip, shift, 1, 10000, true))).toBeLessThan(1e-6);
      expect(relL2(el.dataSync(), refTimestep(large, dim, flip, shift))).toBeLessThan(3e-5);
      if (dim % 2) { // odd dim: the last column is the zero pad
        const v = el.dataSync();
        for (let r = 0; r < large.length; r++) expect(v[r * dim + dim - 1]).toBe(0);
      }
      tf.dispose([es, el]);
    }
    // Scale (as PixArt/SDXL-style callers pass) and a fractional timestep.
    const e2 = timestepEmbedding([999, 12.5], 64, { flipSinToCos: flip, downscaleFreqShift: shift, scale: 2 });
    expect(relL2(e2.dataSync(), refTimestep([999, 12.5], 64, flip, shift, 2, 10000, true))).toBeLessThan(1e-6);
    e2.dispose();
  });

  test('nearest 2× upsampling (and Upsample2D without conv)', () => {
    const [N, C, H, W] = [2, 3, 3, 4];
    const x = randn(8, N * C * H * W);
    const ref = new Float64Array(N * C * 4 * H * W);
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let y = 0; y < 2 * H; y++) for (let xx = 0; xx < 2 * W; xx++) {
      ref[((n * C + c) * 2 * H + y) * 2 * W + xx] = x[((n * C + c) * H + (y >> 1)) * W + (xx >> 1)];
    }
    const xin = nchwToNhwc(x, [N, C, H, W]);
    const y = noLeak(() => upsampleNearest2x(xin));
    expect(y.shape).toEqual([N, 2 * H, 2 * W, C]);
    expect(Array.from(nhwcToNchw(y))).toEqual(Array.from(ref, Math.fround));
    const y2 = new Upsample2D(C, false).forward(xin);
    expect(Array.from(y2.dataSync())).toEqual(Array.from(y.dataSync()));
    tf.dispose([xin, y, y2]);
  });

  test('Upsample2D with conv', async () => {
    const [N, C, H, W] = [1, 2, 3, 3];
    const m = new Upsample2D(C, true, 3);
    const w = randomTorchWeights(m, 70);
    await load(m, w);
    const x = randn(9, N * C * H * W);
    const up = new Float64Array(N * C * 4 * H * W);
    for (let c = 0; c < C; c++) for (let y = 0; y < 2 * H; y++) for (let xx = 0; xx < 2 * W; xx++) up[(c * 2 * H + y) * 2 * W + xx] = x[(c * H + (y >> 1)) * W + (xx >> 1)];
    const ref = refConv(up, [N, C, 2 * H, 2 * W], w['conv.weight'].values, w['conv.bias'].values, 3, 3, 1, 1);
    const xin = nchwToNhwc(x, [N, C, H, W]);
    const y = noLeak(() => m.forward(xin));
    expect(relL2(nhwcToNchw(y), ref.y)).toBeLessThan(TOL);
    tf.dispose([xin, y]);
    m.dispose();
  });

  test.each([[0, 6, 6], [0, 7, 5], [1, 6, 6], [1, 7, 5]])('Downsample2D padding %i on %ix%i (padding 0 = asymmetric (0,1,0,1) pad)', async (padding, H, W) => {
    const [N, C, O] = [2, 3, 4];
    const m = new Downsample2D(C, true, O, padding);
    const w = randomTorchWeights(m, 80);
    await load(m, w);
    const x = randn(10, N * C * H * W);
    let ref: { y: Float64Array; shape: number[] };
    if (padding === 0) {
      // diffusers: F.pad(x, (0, 1, 0, 1)) then conv(stride 2, padding 0).
      const xp = new Float64Array(N * C * (H + 1) * (W + 1));
      for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let xx = 0; xx < W; xx++) {
        xp[((n * C + c) * (H + 1) + y) * (W + 1) + xx] = x[((n * C + c) * H + y) * W + xx];
      }
      ref = refConv(xp, [N, C, H + 1, W + 1], w['conv.weight'].values, w['conv.bias'].values, O, 3, 2, 0);
    } else {
      ref = refConv(x, [N, C, H, W], w['conv.weight'].values, w['conv.bias'].values, O, 3, 2, 1);
    }
    const xin = nchwToNhwc(x, [N, C, H, W]);
    const y = noLeak(() => m.forward(xin));
    expect([y.shape[0], y.shape[3], y.shape[1], y.shape[2]]).toEqual(ref.shape);
    expect(relL2(nhwcToNchw(y), ref.y)).toBeLessThan(TOL);
    tf.dispose([xin, y]);
    m.dispose();
  });

  test('Downsample2D without conv is a 2×2 average pool', () => {
    const [N, C, H, W] = [1, 2, 4, 6];
    const x = randn(11, N * C * H * W);
    const ref = new Float64Array(N * C * (H / 2) * (W / 2));
    for (let c = 0; c < C; c++) for (let y = 0; y < H / 2; y++) for (let xx = 0; xx < W / 2; xx++) {
      let s = 0;
      for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) s += x[(c * H + 2 * y + dy) * W + 2 * xx + dx];
      ref[(c * H / 2 + y) * W / 2 + xx] = s / 4;
    }
    const xin = nchwToNhwc(x, [N, C, H, W]);
    const y = new Downsample2D(C, false).forward(xin);
    expect(relL2(nhwcToNchw(y), ref)).toBeLessThan(TOL);
    tf.dispose([xin, y]);
  });

  test.each([['default', 4, 6], ['scale_shift', 4, 4]] as const)('ResnetBlock2D (%s time embedding norm, %i→%i channels)', async (norm, cin, cout) => {
    const [N, H, W, T, G, eps] = [2, 4, 5, 8, 2, 1e-6];
    const m = new ResnetBlock2D({ inChannels: cin, outChannels: cout, tembChannels: T, groups: G, eps, timeEmbeddingNorm: norm, outputScaleFactor: 2 });
    const w = randomTorchWeights(m, 90);
    await load(m, w);
    const x = randn(12, N * cin * H * W);
    const temb = randn(13, N * T);
    const L = H * W;
    const act = (a: Float64Array): Float64Array => a.map(refSilu);
    let h = refConv(act(refGroupNorm(x, N, cin, L, G, eps, w['norm1.weight'].values, w['norm1.bias'].values)), [N, cin, H, W], w['conv1.weight'].values, w['conv1.bias'].values, cout, 3, 1, 1).y;
    const tOut = norm === 'scale_shift' ? 2 * cout : cout;
    const t = refLinear(Float32Array.from(temb, refSilu), N, w['time_emb_proj.weight'].values, w['time_emb_proj.bias'].values, T, tOut);
    if (norm === 'default') h = h.map((v, i) => v + t[Math.floor(i / (cout * L)) * tOut + Math.floor(i / L) % cout]);
    h = refGroupNorm(h, N, cout, L, G, eps, w['norm2.weight'].values, w['norm2.bias'].values);
    if (norm === 'scale_shift') {
      h = h.map((v, i) => {
        const n = Math.floor(i / (cout * L));
        const c = Math.floor(i / L) % cout;
        return v * (1 + t[n * tOut + c]) + t[n * tOut + cout + c];
      });
    }
    h = refConv(act(h), [N, cout, H, W], w['conv2.weight'].values, w['conv2.bias'].values, cout, 3, 1, 1).y;
    const sc = cin !== cout ? refConv(x, [N, cin, H, W], w['conv_shortcut.weight'].values, w['conv_shortcut.bias'].values, cout, 1, 1, 0).y : Float64Array.from(x);
    const ref = h.map((v, i) => (v + sc[i]) / 2);
    const xin = nchwToNhwc(x, [N, cin, H, W]);
    const tt = tf.tensor2d(temb, [N, T]);
    const y = noLeak(() => m.forward(xin, tt));
    expect(relL2(nhwcToNchw(y), ref)).toBeLessThan(TOL);
    tf.dispose([xin, tt, y]);
    m.dispose();
  });

  describe('scaledDotProductAttention', () => {
    const [B, Nq, Nk, H, d] = [2, 7, 5, 3, 4];
    const C = H * d;
    const scale = 1 / Math.sqrt(d);
    const q = randn(100, B * Nq * C);
    const k = randn(101, B * Nk * C);
    const v = randn(102, B * Nk * C);
    const mask = randn(103, B * Nk).map((x) => (x > 0.3 ? -10000 : 0));
    const full = randn(104, B * Nq * Nk);
    const perHead = randn(105, B * H * Nq * Nk);
    const biases: [string, number[], Float32Array, (b: number, h: number, i: number, j: number) => number][] = [
      ['[B,1,Nk] mask', [B, 1, Nk], mask, (b, _h, _i, j) => mask[b * Nk + j]],
      ['[B,Nq,Nk]', [B, Nq, Nk], full, (b, _h, i, j) => full[(b * Nq + i) * Nk + j]],
      ['[B,H,Nq,Nk]', [B, H, Nq, Nk], perHead, (b, h, i, j) => perHead[((b * H + h) * Nq + i) * Nk + j]],
      ['[B,Nk] 2-D', [B, Nk], mask, (b, _h, _i, j) => mask[b * Nk + j]],
    ];

    test('no bias, and queryChunk (chunked == unchunked)', () => {
      const [qt, kt, vt] = [tf.tensor3d(q, [B, Nq, C]), tf.tensor3d(k, [B, Nk, C]), tf.tensor3d(v, [B, Nk, C])];
      const ref = refAttention(q, k, v, B, Nq, Nk, H, d, scale, null);
      const y = noLeak(() => scaledDotProductAttention(qt, kt, vt, { heads: H, scale }));
      expect(y.shape).toEqual([B, Nq, C]);
      expect(relL2(y.dataSync(), ref)).toBeLessThan(TOL);
      for (const chunk of [1, 3, 7, 100]) {
        const yc = noLeak(() => scaledDotProductAttention(qt, kt, vt, { heads: H, scale, queryChunk: chunk }));
        expect(relL2(yc.dataSync(), y.dataSync())).toBeLessThan(1e-6);
        yc.dispose();
      }
      tf.dispose([qt, kt, vt, y]);
    });

    test.each(biases)('bias %s, whole and with queryChunk 3', (_n, shape, values, fn) => {
      const [qt, kt, vt] = [tf.tensor3d(q, [B, Nq, C]), tf.tensor3d(k, [B, Nk, C]), tf.tensor3d(v, [B, Nk, C])];
      const bias = tf.tensor(values, shape);
      const ref = refAttention(q, k, v, B, Nq, Nk, H, d, scale, fn);
      const y = noLeak(() => scaledDotProductAttention(qt, kt, vt, { heads: H, scale, bias }));
      expect(relL2(y.dataSync(), ref)).toBeLessThan(TOL);
      const yc = noLeak(() => scaledDotProductAttention(qt, kt, vt, { heads: H, scale, bias, queryChunk: 3 }));
      expect(relL2(yc.dataSync(), y.dataSync())).toBeLessThan(1e-6);
      tf.dispose([qt, kt, vt, bias, y, yc]);
    });

    test('scale 1 (T5) and self-attention shapes', () => {
      const qt = tf.tensor3d(q, [B, Nq, C]);
      const ref = refAttention(q, q, q, B, Nq, Nq, H, d, 1, null);
      const y = scaledDotProductAttention(qt, qt, qt, { heads: H, scale: 1, queryChunk: 2 });
      expect(relL2(y.dataSync(), ref)).toBeLessThan(TOL);
      tf.dispose([qt, y]);
    });
  });
});
