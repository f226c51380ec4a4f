/**
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON describing each tensor
 * (`dtype`, `shape`, `data_offsets` relative to the data section), then the raw little-endian data.
 *
 * Every number in the header is untrusted: it is validated against the file size before anything is
 * allocated, so a corrupt file fails with a message naming the file and the problem, never a huge
 * allocation or a hang.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Storage dtypes of the safetensors format that we read. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** One tensor's entry in the header. Offsets are absolute (from the start of the file). */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** Largest header we accept; real checkpoints have headers of a few hundred KiB. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

/** Reads the header length from the first 8 bytes, checking it against the file size. */
export function headerLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) throw new SafetensorsError(file, `truncated: ${fileSize} bytes, a safetensors file starts with an 8-byte header length`);
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(file, `header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  if (Number(n) + 8 > fileSize) throw new SafetensorsError(file, `header length ${n} runs past the end of the file (${fileSize} bytes): truncated or not a safetensors file`);
  return Number(n);
}

/**
 * Parses and validates a header. Tensors must lie inside the data section, must not overlap, and
 * their byte size must equal shape × dtype size.
 */
export function parseHeader(
  headerBytes: Uint8Array, fileSize: number, file: string,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new SafetensorsError(file, 'header is not a JSON object');
  const dataStart = 8 + headerBytes.length;
  const dataBytes = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SafetensorsError(file, '__metadata__ is not an object');
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (e === null || typeof e !== 'object') throw new SafetensorsError(file, `tensor "${name}": entry is not an object`);
    // hasOwn, not `in`: "toString" and friends are on every object's prototype.
    if (typeof e.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, e.dtype)) {
      throw new SafetensorsError(file, `tensor "${name}": unknown dtype ${JSON.stringify(e.dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const dtype = e.dtype as SafetensorsDtype;
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new SafetensorsError(file, `tensor "${name}": shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    }
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
      throw new SafetensorsError(file, `tensor "${name}": data_offsets ${JSON.stringify(off)} are not two ordered non-negative integers`);
    }
    if (off[1] > dataBytes) {
      throw new SafetensorsError(file, `tensor "${name}": data_offsets [${off[0]}, ${off[1]}] run past the data section (${dataBytes} bytes): truncated file?`);
    }
    let elems = 1;
    for (const d of shape) elems *= d;
    const want = elems * DTYPE_BYTES[dtype];
    if (want !== off[1] - off[0]) {
      throw new SafetensorsError(file, `tensor "${name}": shape [${shape}] × ${dtype} needs ${want} bytes but data_offsets span ${off[1] - off[0]}`);
    }
    tensors.set(name, { name, dtype, shape, begin: dataStart + off[0], end: dataStart + off[1] });
  }
  // Ties broken by end, so a zero-size tensor sharing its offset with a neighbour is not an overlap.
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new SafetensorsError(file, `tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap`);
    }
  }
  return { tensors, metadata };
}

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
  read(begin: number, end: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** An in-memory source (browser `ArrayBuffer`, or bytes already read). */
export class BufferSource implements ByteSource {
  constructor(private readonly bytes: Uint8Array, readonly name = '<buffer>') {}
  async size(): Promise<number> { return this.bytes.length; }
  async read(begin: number, end: number): Promise<Uint8Array> { return this.bytes.subarray(begin, end); }
}

/** Fetches byte ranges over HTTP(S) with `Range` requests, so only the tensors asked for travel. */
export class HttpRangeSource implements ByteSource {
  private total?: number;
  constructor(readonly name: string, private readonly fetchFn: typeof fetch = fetch) {}
  async size(): Promise<number> {
    if (this.total === undefined) {
      const r = await this.fetchFn(this.name, { method: 'HEAD' });
      const len = Number(r.headers.get('content-length'));
      if (!r.ok || !Number.isFinite(len)) throw new SafetensorsError(this.name, `HEAD request failed (${r.status}) or gave no Content-Length`);
      this.total = len;
    }
    return this.total;
  }
  async read(begin: number, end: number): Promise<Uint8Array> {
    if (end <= begin) return new Uint8Array(0);
    const r = await this.fetchFn(this.name, { headers: { Range: `bytes=${begin}-${end - 1}` } });
    if (!r.ok) throw new SafetensorsError(this.name, `range request ${begin}-${end - 1} failed with HTTP ${r.status}`);
    const buf = new Uint8Array(await r.arrayBuffer());
    if (r.status === 200) return buf.subarray(begin, end); // server ignored Range: take our slice
    if (buf.length !== end - begin) throw new SafetensorsError(this.name, `range request ${begin}-${end - 1} returned ${buf.length} bytes`);
    return buf;
  }
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
