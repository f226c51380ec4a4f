/**
 * The TF.js weights format (`model.json` + binary shards), as written by `tgate convert` and read back in
 * Node or the browser.
 *
 * A weight group's shards are one byte stream cut into files (tf.io semantics), so a tensor may start in
 * one shard and end in the next. Entries are float32 tensors, optionally stored quantized through tf.io's
 * `quantization` field: float16, or uint8 with `value = q · scale + min` (per tensor).
 *
 * Tensors written by `tgate convert` are already in our layouts (HWIO convolutions, [in,out] linears), so
 * the reader sets `layoutConverted` and loading needs no transposes. This file has no static Node imports:
 * the browser bundle must not pull in `fs`.
 */
import { isRemote } from './location.js';
import type { WeightSource } from '../nn/module.js';

/** How weights are stored: float32 as is, or quantized. */
export type QuantizeMode = 'none' | 'float16' | 'uint8';

export const QUANTIZE_MODES: QuantizeMode[] = ['none', 'float16', 'uint8'];

/** Bytes per stored element for each mode. */
export const STORED_BYTES: Record<QuantizeMode, number> = { none: 4, float16: 2, uint8: 1 };

/** One tensor in a weights manifest (tf.io `WeightsManifestEntry`, restricted to what we write and read). */
export interface TfjsWeightEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: { dtype: 'float16' | 'uint8'; min?: number; scale?: number };
}

/** A weight group: `paths` concatenated form one byte stream holding `weights` in order. */
export interface TfjsWeightGroup {
  paths: string[];
  weights: TfjsWeightEntry[];
}

/** Our record in `userDefinedMetadata.tgate`: what a loader needs besides the manifest. */
export interface TgateMetadata {
  /** Format version of this record. */
  version: 1;
  /** Tensors are stored in our layouts (HWIO / [in,out]), not PyTorch's. */
  layout: 'tgate-tfjs';
  /** The component's `_class_name` (or transformers `architectures[0]`). */
  className: string;
  /** The component's config.json, as read. */
  config: Record<string, unknown>;
  quantize: QuantizeMode;
  /** Byte size of each shard of group 0, so readers can map offsets without fetching. */
  shardSizes: number[];
}

/** `model.json` as we write it; tf.io tooling reads its `weightsManifest`. */
export interface TfjsModelJson {
  format: string;
  generatedBy: string;
  convertedBy: string;
  modelTopology: null;
  weightsManifest: TfjsWeightGroup[];
  userDefinedMetadata?: { tgate?: TgateMetadata };
}

/** tf.js' shard naming: `group1-shard3of12.bin`. */
export function shardFileName(index: number, count: number, group = 1): string {
  return `group${group}-shard${index + 1}of${count}.bin`;
}

/** Shard size in bytes for `--shard-mb` (MiB), a multiple of 4 so that no stored element straddles shards. */
export function shardBytesFor(shardMb: number): number {
  if (!(shardMb > 0) || !Number.isFinite(shardMb)) throw new Error(`shard size must be a positive number of MiB, got ${shardMb}`);
  return Math.max(4, Math.floor((shardMb * 1024 * 1024) / 4) * 4);
}

// ---------------------------------------------------------------------------------------------------------
// Number formats

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half bits, round to nearest even (overflow → ±Inf, NaN kept). */
export function f32ToF16Bits(v: number): number {
  f32Scratch[0] = v;
  const u = u32Scratch[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

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
    const out = new Uint16Array(dst.buffer, dst.byteOffset, src.length);
    for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
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

// ---------------------------------------------------------------------------------------------------------
// Writing

/**
 * Packs a byte stream into fixed-size shards and hands each full shard to `sink` (which must be done
 * with the bytes when its promise resolves: one shard buffer is reused). Memory: one shard.
 */
export class ShardPacker {
  readonly shardCount: number;
  readonly shardSizes: number[] = [];
  private readonly buf: Uint8Array;
  private fill = 0;
  private index = 0;
  private written = 0;

  constructor(
    readonly shardBytes: number,
    readonly totalBytes: number,
    private readonly sink: (index: number, count: number, bytes: Uint8Array) => Promise<void>,
  ) {
    if (shardBytes % 4) throw new Error(`shard size ${shardBytes} is not a multiple of 4`);
    this.shardCount = Math.max(1, Math.ceil(totalBytes / shardBytes));
    this.buf = new Uint8Array(Math.min(shardBytes, Math.max(totalBytes, 4)));
  }

  private currentShardLength(): number {
    return Math.min(this.shardBytes, this.totalBytes - this.index * this.shardBytes);
  }

  /**
   * Appends `byteLength` bytes, produced piecewise: `produce(dst, offset)` fills `dst` with the bytes at
   * `offset..offset+dst.length` of this tensor. Pieces end at shard boundaries.
   */
  async append(byteLength: number, produce: (dst: Uint8Array, offset: number) => void): Promise<void> {
    if (this.written + byteLength > this.totalBytes) throw new Error(`shard packer: ${this.written + byteLength} bytes exceed the announced ${this.totalBytes}`);
    let off = 0;
    while (off < byteLength) {
      const room = this.currentShardLength() - this.fill;
      const n = Math.min(room, byteLength - off);
      produce(this.buf.subarray(this.fill, this.fill + n), off);
      this.fill += n;
      off += n;
      this.written += n;
      if (this.fill === this.currentShardLength()) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const len = this.currentShardLength();
    await this.sink(this.index, this.shardCount, this.buf.subarray(0, len));
    this.shardSizes.push(len);
    this.index++;
    this.fill = 0;
  }

  /** Checks that everything announced was written (an empty stream still gets one empty shard). */
  async finish(): Promise<void> {
    if (this.written !== this.totalBytes) throw new Error(`shard packer: wrote ${this.written} of ${this.totalBytes} bytes`);
    if (this.totalBytes === 0) await this.flush();
  }
}

/** Builds `model.json` for one component. */
export function buildModelJson(weights: TfjsWeightEntry[], paths: string[], meta: TgateMetadata): TfjsModelJson {
  return {
    format: 'tgate-tfjs-weights',
    generatedBy: 'diffusers safetensors',
    convertedBy: 'tgate convert',
    modelTopology: null,
    weightsManifest: [{ paths, weights }],
    userDefinedMetadata: { tgate: meta },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/** Progress of shard downloads (browser / http). */
export interface FetchProgress {
  loadedBytes: number;
  /** Known once every shard's size is known (always for folders written by `tgate convert`). */
  totalBytes?: number;
  shard: number;
  shardCount: number;
}

export interface TfjsOpenOptions {
  /** fetch to use for URLs (default: global fetch). Passing one forces URL mode. */
  fetch?: typeof fetch;
  onProgress?: (p: FetchProgress) => void;
  /** Keep fetched shards in the Cache API (when `caches` exists): true uses cache "tgate-tfjs-weights". */
  cache?: boolean | string;
}

/** Where a group's shards come from. */
interface ShardStore {
  readonly count: number;
  size(i: number): Promise<number>;
  /** Bytes begin..end of shard i; `owned` says the array is fresh (not a view of a cached shard). */
  read(i: number, begin: number, end: number): Promise<{ bytes: Uint8Array; owned: boolean }>;
  close(): Promise<void>;
}

type FsPromises = typeof import('node:fs/promises');
const NODE_FS = 'node:fs/promises';
let fsMod: Promise<FsPromises> | undefined;
/** Loads node:fs only when a local path is read, so bundlers leave it out. */
function nodeFs(): Promise<FsPromises> {
  fsMod ??= import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS) as Promise<FsPromises>;
  return fsMod;
}

class FileShardStore implements ShardStore {
  private handles = new Map<number, Promise<import('node:fs/promises').FileHandle>>();
  constructor(private readonly files: string[], private readonly sizes?: number[]) {}
  get count(): number { return this.files.length; }
  private fh(i: number): Promise<import('node:fs/promises').FileHandle> {
    let h = this.handles.get(i);
    if (!h) {
      h = nodeFs().then((fs) => fs.open(this.files[i], 'r')).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`cannot open weight shard ${this.files[i]}: ${e.code ?? e.message}`);
      });
      this.handles.set(i, h);
    }
    return h;
  }
  async size(i: number): Promise<number> {
    return this.sizes?.[i] ?? (await (await this.fh(i)).stat()).size;
  }
  async read(i: number, begin: number, end: number): Promise<{ bytes: Uint8Array; owned: boolean }> {
    const buf = new Uint8Array(end - begin);
    const fh = await this.fh(i);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, begin + got);
      if (bytesRead === 0) throw new Error(`weight shard ${this.files[i]} is truncated: wanted bytes ${begin}..${end}`);
      got += bytesRead;
    }
    return { bytes: buf, owned: true };
  }
  async close(): Promise<void> {
    const hs = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(hs.map(async (h) => (await h.catch(() => null))?.close()));
  }
}

/**
 * Whole-shard fetches (the unit a browser cache keeps), at most two shards held: tensors are read in
 * stream order, and one spanning a boundary needs the two shards it touches.
 */
class FetchShardStore implements ShardStore {
  private held: { i: number; bytes: Uint8Array }[] = [];
  private readonly known: (number | undefined)[];
  private loaded = 0;
  private pending = new Map<number, Promise<Uint8Array>>();
  constructor(private readonly urls: string[], private readonly opts: TfjsOpenOptions, sizes?: number[]) {
    this.known = urls.map((_, i) => sizes?.[i]);
  }
  get count(): number { return this.urls.length; }

  private total(): number | undefined {
    return this.known.every((s) => s !== undefined) ? this.known.reduce((a, b) => a! + b!, 0) : undefined;
  }

  private async download(i: number): Promise<Uint8Array> {
    const url = this.urls[i];
    const f = this.opts.fetch ?? fetch;
    const cacheName = this.opts.cache === true ? 'tgate-tfjs-weights' : this.opts.cache || undefined;
    const cache = cacheName && typeof caches !== 'undefined' ? await caches.open(cacheName) : undefined;
    let r = cache ? await cache.match(url) : undefined;
    const fromCache = !!r;
    if (!r) {
      r = await f(url);
      if (!r.ok) throw new Error(`fetching weight shard ${url} failed: HTTP ${r.status}`);
    }
    const len = Number(r.headers.get('content-length'));
    const parts: Uint8Array[] = [];
    let got = 0;
    if (r.body && typeof r.body.getReader === 'function') {
      const reader = r.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        this.opts.onProgress?.({ loadedBytes: this.loaded + got, totalBytes: this.total(), shard: i, shardCount: this.count });
      }
    } else {
      const b = new Uint8Array(await r.arrayBuffer());
      parts.push(b);
      got = b.length;
    }
    if (Number.isFinite(len) && len > 0 && !r.headers.get('content-encoding') && got !== len) {
      throw new Error(`weight shard ${url}: got ${got} of ${len} bytes`);
    }
    const bytes = parts.length === 1 ? parts[0] : new Uint8Array(got);
    if (parts.length !== 1) { let o = 0; for (const p of parts) { bytes.set(p, o); o += p.length; } }
    if (this.known[i] !== undefined && this.known[i] !== bytes.length) {
      throw new Error(`weight shard ${url} has ${bytes.length} bytes, model.json says ${this.known[i]}`);
    }
    this.known[i] = bytes.length;
    this.loaded += bytes.length;
    this.opts.onProgress?.({ loadedBytes: this.loaded, totalBytes: this.total(), shard: i, shardCount: this.count });
    if (cache && !fromCache) await cache.put(url, new Response(bytes as unknown as BodyInit)).catch(() => undefined);
    return bytes;
  }

  private async shard(i: number): Promise<Uint8Array> {
    const h = this.held.find((s) => s.i === i);
    if (h) return h.bytes;
    let p = this.pending.get(i);
    if (!p) {
      p = this.download(i);
      this.pending.set(i, p);
    }
    try {
      const bytes = await p;
      if (!this.held.some((s) => s.i === i)) {
        this.held.push({ i, bytes });
        if (this.held.length > 2) this.held.shift();
      }
      return bytes;
    } finally {
      this.pending.delete(i);
    }
  }

  async size(i: number): Promise<number> {
    return this.known[i] ?? (await this.shard(i)).length;
  }
  async read(i: number, begin: number, end: number): Promise<{ bytes: Uint8Array; owned: boolean }> {
    return { bytes: (await this.shard(i)).subarray(begin, end), owned: false };
  }
  async close(): Promise<void> { this.held = []; }
}

interface Located { entry: TfjsWeightEntry; group: number; offset: number; length: number }

/**
 * A converted component (`model.json` + shards) as a {@link WeightSource}, from a local path (Node) or a
 * URL (any `fetch`). Tensors are assembled from the shard bytes they occupy; all shards are never joined.
 */
export class TfjsWeightSource implements WeightSource {
  readonly layoutConverted = true;
  private readonly index = new Map<string, Located>();
  private readonly groupStarts: (number[] | undefined)[] = [];

  private constructor(readonly name: string, readonly modelJson: TfjsModelJson, private readonly stores: ShardStore[]) {
    modelJson.weightsManifest.forEach((g, gi) => {
      let off = 0;
      for (const w of g.weights) {
        if (w.dtype !== 'float32') throw new Error(`${name}: weight "${w.name}" has dtype ${w.dtype}; only float32 weights are supported`);
        if (this.index.has(w.name)) throw new Error(`${name}: weight "${w.name}" is listed twice`);
        const length = storedByteLength(w);
        this.index.set(w.name, { entry: w, group: gi, offset: off, length });
        off += length;
      }
    });
  }

  /** The component's metadata, when the folder was written by `tgate convert`. */
  get metadata(): TgateMetadata | undefined { return this.modelJson.userDefinedMetadata?.tgate; }

  /**
   * Opens `location`: a folder or its `model.json`, as a local path (Node) or a URL.
   */
  static async open(location: string, opts: TfjsOpenOptions = {}): Promise<TfjsWeightSource> {
    const url = isRemote(location, opts.fetch);
    const jsonLoc = /\.json$/i.test(location) ? location : url ? `${location.replace(/\/+$/, '')}/model.json` : `${location.replace(/[\\/]+$/, '')}/model.json`;
    let json: TfjsModelJson;
    let stores: ShardStore[];
    if (url) {
      const f = opts.fetch ?? fetch;
      const r = await f(jsonLoc);
      if (!r.ok) throw new Error(`fetching ${jsonLoc} failed: HTTP ${r.status}`);
      json = parseModelJson(await r.text(), jsonLoc);
      // Relative URLs resolve against the page (browser); in Node a URL must be absolute.
      const base = new URL('.', new URL(jsonLoc, typeof window !== 'undefined' ? window.location.href : undefined));
      stores = json.weightsManifest.map((g, gi) =>
        new FetchShardStore(g.paths.map((p) => new URL(p, base).href), opts, gi === 0 ? json.userDefinedMetadata?.tgate?.shardSizes : undefined));
    } else {
      const fs = await nodeFs();
      let text: string;
      try {
        text = await fs.readFile(jsonLoc, 'utf8');
      } catch (e) {
        throw new Error(`cannot read ${jsonLoc}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      json = parseModelJson(text, jsonLoc);
      const dir = jsonLoc.replace(/[\\/][^\\/]*$/, '') || '.';
      stores = json.weightsManifest.map((g, gi) =>
        new FileShardStore(g.paths.map((p) => `${dir}/${p}`), gi === 0 ? json.userDefinedMetadata?.tgate?.shardSizes : undefined));
    }
    return new TfjsWeightSource(jsonLoc, json, stores);
  }

  keys(): string[] { return [...this.index.keys()]; }

  private locate(key: string): Located {
    const l = this.index.get(key);
    if (!l) throw new Error(`${this.name}: no weight "${key}"`);
    return l;
  }

  shape(key: string): number[] { return this.locate(key).entry.shape; }

  private async starts(group: number): Promise<number[]> {
    let s = this.groupStarts[group];
    if (!s) {
      const store = this.stores[group];
      s = [0];
      for (let i = 0; i < store.count; i++) s.push(s[i] + (await store.size(i)));
      this.groupStarts[group] = s;
    }
    return s;
  }

  /** Reads and dequantizes one tensor (float32, our layout). */
  async read(key: string): Promise<Float32Array> {
    const { entry, group, offset, length } = this.locate(key);
    const store = this.stores[group];
    const starts = await this.starts(group);
    const end = offset + length;
    if (end > starts[starts.length - 1]) throw new Error(`${this.name}: weight "${key}" ends at byte ${end} but the shards hold ${starts[starts.length - 1]}`);
    const pieces: Uint8Array[] = [];
    let owned = false;
    for (let i = 0; i < store.count && starts[i] < end; i++) {
      if (starts[i + 1] <= offset) continue;
      const b = Math.max(offset, starts[i]) - starts[i];
      const e = Math.min(end, starts[i + 1]) - starts[i];
      const got = await store.read(i, b, e);
      pieces.push(got.bytes);
      owned = got.owned;
    }
    if (pieces.length === 1) return decodeStored(pieces[0], entry, owned);
    // A tensor spanning shards: assemble only its own bytes.
    const bytes = new Uint8Array(length);
    let o = 0;
    for (const p of pieces) { bytes.set(p, o); o += p.length; }
    return decodeStored(bytes, entry, true);
  }

  async close(): Promise<void> { await Promise.all(this.stores.map((s) => s.close())); }
}

function parseModelJson(text: string, where: string): TfjsModelJson {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where} is not valid JSON: ${(e as Error).message}`);
  }
  const m = j as Partial<TfjsModelJson> | null;
  if (!m || typeof m !== 'object' || !Array.isArray(m.weightsManifest)) throw new Error(`${where} has no weightsManifest: not a TF.js model folder`);
  for (const g of m.weightsManifest) {
    if (!Array.isArray(g?.paths) || !Array.isArray(g?.weights)) throw new Error(`${where}: a weightsManifest group lacks paths or weights`);
  }
  return m as TfjsModelJson;
}
