/**
 * Weights built in JS memory without touching the backend, for offloaded parameters (nn/offload.ts): a
 * model larger than the wasm heap must be loadable and initialisable before any of it is uploaded.
 */
import type { ParamLayout } from './module.js';

/** `values` as an array that owns its whole buffer, copying only if it is a view into a larger one (a shard). */
export function ownedArray(values: Float32Array): Float32Array {
  return values.byteOffset === 0 && values.byteLength === values.buffer.byteLength ? values : values.slice();
}

// Tiles keep both the reads and the writes of a transpose within a few cache lines.
const TILE = 32;

/** [rows, cols] → [cols, rows], row-major, in JS memory. */
export function transposeValues(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(src.length);
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[row + c];
      }
    }
  }
  return dst;
}

/**
 * A PyTorch-layout tensor's values in ours (see {@link ParamLayout}), computed in JS: linear [out,in] →
 * [in,out], conv OIHW → HWIO. The same result as `toOurLayout` in module.ts, without a backend tensor.
 */
export function toOurLayoutHost(values: Float32Array, torchShape: number[], layout: ParamLayout): Float32Array {
  if (layout === 'plain') return ownedArray(values);
  if (layout === 'linear') return transposeValues(values, torchShape[0], torchShape[1]);
  const [o, i, kh, kw] = torchShape;
  const taps = kh * kw;
  // OIHW viewed as [O, I·taps]; a 1×1 conv is a plain transpose.
  if (taps === 1) return transposeValues(values, o, i);
  const dst = new Float32Array(values.length);
  for (let oc = 0; oc < o; oc++) {
    for (let ic = 0; ic < i; ic++) {
      const src = (oc * i + ic) * taps;
      for (let s = 0; s < taps; s++) dst[(s * i + ic) * o + oc] = values[src + s];
    }
  }
  return dst;
}

/**
 * `n` normal samples N(0, std²) from a seeded generator in JS (32-bit splitmix, Box–Muller): the same seed
 * gives the same values on every backend and every run. They are not the values `tf.randomNormal` draws
 * for that seed.
 */
export function randomNormalHost(n: number, std: number, seed: number): Float32Array {
  let state = (Math.imul(seed | 0, 0x9e3779b9) ^ 0x6a09e667) >>> 0;
  const next = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let k = 0; k < n; k += 2) {
    // 1 − u ∈ (0, 1]: log never sees 0.
    const r = std * Math.sqrt(-2 * Math.log(1 - next()));
    const a = 2 * Math.PI * next();
    out[k] = r * Math.cos(a);
    if (k + 1 < n) out[k + 1] = r * Math.sin(a);
  }
  return out;
}
