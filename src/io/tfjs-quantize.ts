/**
 * The element codecs of the TF.js weights format: float32 stored as is, or quantized through tf.io's
 * `quantization` field as float16, or as uint8 with `value = q · scale + min` (per tensor). Encoding is
 * what `tgate convert` writes; decoding is what the reader returns (always float32). No Node imports.
 */
import type { QuantizeMode, TfjsWeightEntry } from './tfjs-manifest.js';
import { f32ToF16Bits, toHalves } from '../nn/float16.js';

// The float32 → half rounding lives with the float16 weights that share it.
export { f32ToF16Bits };

let f16Table: Float32Array | undefined;
/** All 65536 half values as float32 (256 KiB, built once): decoding is one lookup per element. */
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      f16Table[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  return f16Table;
}

/** Per-tensor uint8 parameters: q = round((v − min) / scale), clamped to 0..255. */
export function uint8Params(values: Float32Array): { min: number; scale: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!Number.isFinite(min) || !Number.isFinite(max)) {
    if (values.length === 0) return { min: 0, scale: 1 };
    throw new Error('uint8 quantization needs finite weights (found NaN or Inf)');
  }
  // A constant tensor: any scale works, q is 0 and the value is min exactly.
  return { min, scale: max > min ? (max - min) / 255 : 1 };
}

/** Encodes float32 values into the stored form in `dst` (whose byteOffset suits the element size). */
export function encodeStored(src: Float32Array, dst: Uint8Array, mode: QuantizeMode, q?: { min: number; scale: number }): void {
  if (mode === 'none') {
    new Float32Array(dst.buffer, dst.byteOffset, src.length).set(src);
  } else if (mode === 'float16') {
    toHalves(src, new Uint16Array(dst.buffer, dst.byteOffset, src.length));
  } else {
    if (!q) throw new Error('uint8 encoding needs min and scale');
    const inv = 1 / q.scale;
    for (let i = 0; i < src.length; i++) {
      const r = Math.round((src[i] - q.min) * inv);
      dst[i] = r < 0 ? 0 : r > 255 ? 255 : r;
    }
  }
}

/** Decodes one entry's stored bytes to float32 (a fresh array that does not alias `bytes`' buffer unless fresh). */
export function decodeStored(bytes: Uint8Array, entry: TfjsWeightEntry, owned = false): Float32Array {
  const n = entry.shape.reduce((a, b) => a * b, 1);
  const qz = entry.quantization;
  if (!qz) {
    if (owned && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(bytes.subarray(0, n * 4));
    return out;
  }
  const out = new Float32Array(n);
  if (qz.dtype === 'float16') {
    const t = halfTable();
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) out[i] = t[dv.getUint16(2 * i, true)];
  } else if (qz.dtype === 'uint8') {
    const scale = qz.scale ?? 1;
    const min = qz.min ?? 0;
    for (let i = 0; i < n; i++) out[i] = bytes[i] * scale + min;
  } else {
    throw new Error(`weight "${entry.name}": unsupported quantization dtype ${JSON.stringify((qz as { dtype: unknown }).dtype)}`);
  }
  return out;
}

/** Bytes an entry occupies in its group's stream. */
export function storedByteLength(entry: Pick<TfjsWeightEntry, 'shape' | 'quantization'>): number {
  const n = entry.shape.reduce((a, b) => a * b, 1);
  const q = entry.quantization?.dtype;
  return n * (q === 'float16' ? 2 : q === 'uint8' ? 1 : 4);
}
