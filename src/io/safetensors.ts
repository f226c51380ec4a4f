/**
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON describing each tensor
 * (`dtype`, `shape`, `data_offsets` relative to the data section), then the raw little-endian data.
 *
 * The header is untrusted: `safetensors-header.ts` validates it as the reference reader does (exact
 * coverage of the data section, sizes, types) with bounds on its complexity, before anything is allocated
 * for tensors, so a corrupt file fails with a message naming the file and the problem, never shifted data,
 * a huge allocation or a hang.
 */
import * as tf from '@tensorflow/tfjs-core';
import { DTYPE_BYTES, SafetensorsError, headerLength, parseHeader, type SafetensorsDtype, type TensorInfo } from './safetensors-header.js';

export {
  DTYPE_BYTES, MAX_HEADER_BYTES, SafetensorsError, headerLength, parseHeader, type SafetensorsDtype, type TensorInfo,
} from './safetensors-header.js';
export { DEFAULT_READ_AHEAD_BYTES, HttpRangeSource, type HttpRangeOptions } from './http-range-source.js';

function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) out[i] = s * m * 2 ** -24;
    else if (e === 31) out[i] = m ? NaN : s * Infinity;
    else out[i] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

function bf16ToF32(bits: Uint16Array): Float32Array {
  const u32 = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i] << 16;
  return new Float32Array(u32.buffer);
}

/** Copies `bytes` into a fresh, aligned buffer viewed as `Ctor`. */
function aligned<T>(bytes: Uint8Array, Ctor: { new(b: ArrayBuffer): T }): T {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return new Ctor(copy.buffer);
}

/**
 * Decodes raw little-endian bytes to the TF.js-compatible typed array: floats become float32 (TF.js has
 * no float16 or float64), integers int32 (values outside int32 are an error, not a silent wrap), BOOL bool.
 */
export function decodeTensorBytes(
  bytes: Uint8Array, info: Pick<TensorInfo, 'dtype' | 'name'>, file: string,
): { values: Float32Array | Int32Array | Uint8Array; dtype: 'float32' | 'int32' | 'bool' } {
  switch (info.dtype) {
    case 'F32': return { values: aligned(bytes, Float32Array), dtype: 'float32' };
    case 'F64': return { values: Float32Array.from(aligned(bytes, Float64Array)), dtype: 'float32' };
    case 'F16': return { values: f16ToF32(aligned(bytes, Uint16Array)), dtype: 'float32' };
    case 'BF16': return { values: bf16ToF32(aligned(bytes, Uint16Array)), dtype: 'float32' };
    case 'I32': return { values: aligned(bytes, Int32Array), dtype: 'int32' };
    case 'I16': return { values: Int32Array.from(aligned(bytes, Int16Array)), dtype: 'int32' };
    case 'I8': return { values: Int32Array.from(aligned(bytes, Int8Array)), dtype: 'int32' };
    case 'U8': return { values: Int32Array.from(bytes), dtype: 'int32' };
    case 'BOOL': return { values: Uint8Array.from(bytes, (b) => (b ? 1 : 0)), dtype: 'bool' };
    case 'I64': {
      const src = aligned(bytes, BigInt64Array);
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i];
        if (v > 2147483647n || v < -2147483648n) throw new SafetensorsError(file, `tensor "${info.name}": I64 value ${v} does not fit in int32`);
        out[i] = Number(v);
      }
      return { values: out, dtype: 'int32' };
    }
  }
}

/** Where the bytes of a safetensors file come from: a local file, an in-memory buffer, or HTTP ranges. */
export interface ByteSource {
  readonly name: string;
  size(): Promise<number>;
  /** Bytes [begin, end); they may be shared with the source or other reads, so treat them as read-only. */
  read(begin: number, end: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** An in-memory source (browser `ArrayBuffer`, or bytes already read). */
export class BufferSource implements ByteSource {
  constructor(private readonly bytes: Uint8Array, readonly name = '<buffer>') {}
  async size(): Promise<number> { return this.bytes.length; }
  async read(begin: number, end: number): Promise<Uint8Array> { return this.bytes.subarray(begin, end); }
}

/** A parsed safetensors file: the header is read once, tensors are read on demand by byte range. */
export class SafetensorsFile {
  private constructor(
    readonly source: ByteSource,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  get name(): string { return this.source.name; }

  static async open(source: ByteSource): Promise<SafetensorsFile> {
    try {
      const size = await source.size();
      const n = headerLength(await source.read(0, Math.min(8, size)), size, source.name);
      const { tensors, metadata } = parseHeader(await source.read(8, 8 + n), size, source.name);
      return new SafetensorsFile(source, tensors, metadata);
    } catch (e) {
      // A rejected file must not keep its handle open.
      await source.close?.().catch(() => undefined);
      throw e;
    }
  }

  static fromBytes(bytes: Uint8Array, name?: string): Promise<SafetensorsFile> {
    return SafetensorsFile.open(new BufferSource(bytes, name));
  }

  keys(): string[] { return [...this.tensors.keys()]; }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.name, `no tensor named "${name}"`);
    return t;
  }

  /** Reads and decodes one tensor's values without creating a TF.js tensor. */
  async readValues(name: string): Promise<{ values: Float32Array | Int32Array | Uint8Array; dtype: 'float32' | 'int32' | 'bool'; shape: number[] }> {
    const info = this.info(name);
    const bytes = await this.source.read(info.begin, info.end);
    return { ...decodeTensorBytes(bytes, info, this.name), shape: info.shape };
  }

  /** Reads one tensor into a new TF.js tensor (the caller owns and disposes it). */
  async tensor(name: string): Promise<tf.Tensor> {
    const { values, dtype, shape } = await this.readValues(name);
    return tf.tensor(values, shape, dtype);
  }

  async close(): Promise<void> { await this.source.close?.(); }
}

/** A tensor to write: TF.js tensor or raw values with a shape. */
export type WritableTensor = tf.Tensor | { values: Float32Array | Int32Array | Uint8Array; shape: number[]; dtype?: SafetensorsDtype };

/**
 * Serialises tensors to safetensors bytes (F32 for float32, I32/I64 for int32 as asked, BOOL for bool),
 * in the reference writer's order: dtype size descending, then name.
 */
export function encodeSafetensors(
  tensors: Record<string, WritableTensor>, metadata?: Record<string, string>, opts: { int64?: boolean } = {},
): Uint8Array {
  const entries = Object.entries(tensors).map(([name, t]) => {
    let values: Float32Array | Int32Array | Uint8Array;
    let shape: number[];
    let dtype: SafetensorsDtype;
    if (t instanceof tf.Tensor) {
      values = t.dataSync() as Float32Array | Int32Array | Uint8Array;
      shape = t.shape;
      dtype = t.dtype === 'int32' ? (opts.int64 ? 'I64' : 'I32') : t.dtype === 'bool' ? 'BOOL' : 'F32';
    } else {
      values = t.values;
      shape = t.shape;
      dtype = t.dtype ?? (values instanceof Float32Array ? 'F32' : values instanceof Int32Array ? (opts.int64 ? 'I64' : 'I32') : 'U8');
    }
    let bytes: Uint8Array;
    if (dtype === 'I64') {
      const b = new BigInt64Array(values.length);
      for (let i = 0; i < values.length; i++) b[i] = BigInt(values[i]);
      bytes = new Uint8Array(b.buffer);
    } else {
      bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    }
    return { name, dtype, shape, bytes };
  });
  entries.sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.bytes.length] };
    off += e.bytes.length;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const hb = new Uint8Array(raw.length + ((8 - (raw.length % 8)) % 8)).fill(0x20);
  hb.set(raw);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const e of entries) { out.set(e.bytes, p); p += e.bytes.length; }
  return out;
}
