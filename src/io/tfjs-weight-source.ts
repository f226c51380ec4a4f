/**
 * Reading a converted component (`model.json` + shards) as a {@link WeightSource}, in Node or the browser.
 *
 * Tensors written by `tgate convert` are already in our layouts (HWIO convolutions, [in,out] linears), so
 * the reader sets `layoutConverted` and loading needs no transposes. This file has no static Node imports:
 * the browser bundle must not pull in `fs`.
 */
import { isRemote } from './location.js';
import type { WeightSource } from '../nn/module.js';
import { readBody } from './http-body.js';
import type { TfjsModelJson, TfjsWeightEntry, TgateMetadata } from './tfjs-manifest.js';
import { decodeStored } from './tfjs-quantize.js';
import { FetchShardStore, FileShardStore, nodeFs, type ShardStore, type TfjsOpenOptions } from './tfjs-shard-stores.js';
import { MAX_MODEL_JSON_BYTES, checkGroupBytes, parseModelJson, type GroupLayout } from './tfjs-validate.js';

interface Located { entry: TfjsWeightEntry; group: number; offset: number; length: number }

/**
 * A converted component (`model.json` + shards) as a {@link WeightSource}, from a local path (Node) or a
 * URL (any `fetch`). Tensors are assembled from the shard bytes they occupy; all shards are never joined.
 */
export class TfjsWeightSource implements WeightSource {
  readonly layoutConverted = true;
  private readonly index = new Map<string, Located>();
  private readonly groupStarts: (number[] | undefined)[] = [];

  private constructor(
    readonly name: string, readonly modelJson: TfjsModelJson, private readonly groups: GroupLayout[], private readonly stores: ShardStore[],
  ) {
    modelJson.weightsManifest.forEach((g, gi) => {
      g.weights.forEach((entry, wi) => {
        this.index.set(entry.name, { entry, group: gi, offset: groups[gi].offsets[wi], length: groups[gi].lengths[wi] });
      });
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
    const { json, groups } = parseModelJson(url ? await readRemote(jsonLoc, opts.fetch ?? fetch) : await readLocal(jsonLoc), jsonLoc);
    let store: (paths: string[], gi: number) => ShardStore;
    if (url) {
      // Relative URLs resolve against the page (browser); in Node a URL must be absolute.
      const base = new URL('.', new URL(jsonLoc, typeof window !== 'undefined' ? window.location.href : undefined));
      store = (paths, gi) => new FetchShardStore(paths.map((p) => new URL(p, base).href), opts, groups[gi].declared, groups[gi].total);
    } else {
      const dir = jsonLoc.replace(/[\\/][^\\/]*$/, '') || '.';
      store = (paths, gi) => new FileShardStore(paths.map((p) => `${dir}/${p}`), groups[gi].declared);
    }
    const stores = json.weightsManifest.map((g, gi) => store(g.paths, gi));
    return new TfjsWeightSource(jsonLoc, json, groups, stores);
  }

  keys(): string[] { return [...this.index.keys()]; }

  private locate(key: string): Located {
    const l = this.index.get(key);
    if (!l) throw new Error(`${this.name}: no weight "${key}"`);
    return l;
  }

  shape(key: string): number[] { return this.locate(key).entry.shape; }

  /** Where each shard of a group starts in its byte stream, once the shards are checked to hold exactly the weights. */
  private async starts(group: number): Promise<number[]> {
    let s = this.groupStarts[group];
    if (!s) {
      const store = this.stores[group];
      const sizes: number[] = [];
      for (let i = 0; i < store.count; i++) sizes.push(await store.size(i));
      checkGroupBytes(this.name, group, this.groups[group].total, sizes);
      s = [0];
      for (const n of sizes) s.push(s[s.length - 1] + n);
      this.groupStarts[group] = s;
    }
    return s;
  }

  /** Reads and dequantizes one tensor (float32, our layout). */
  async read(key: string): Promise<Float32Array> {
    const { entry, bytes, owned } = await this.stored(key);
    return decodeStored(bytes, entry, owned);
  }

  /** The stored half bits of a tensor quantized to float16, else null: float16 weights upload them as they are. */
  async readHalves(key: string): Promise<Uint16Array | null> {
    if (this.locate(key).entry.quantization?.dtype !== 'float16') return null;
    const { bytes, owned } = await this.stored(key);
    return owned && bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2) : new Uint16Array(bytes.slice().buffer);
  }

  /** One tensor's stored bytes; `owned`: a fresh array, not a view of a cached shard. */
  private async stored(key: string): Promise<{ entry: TfjsWeightEntry; bytes: Uint8Array; owned: boolean }> {
    const { entry, group, offset, length } = this.locate(key);
    const store = this.stores[group];
    const starts = await this.starts(group);
    const end = offset + length;
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
    if (pieces.length === 1) return { entry, bytes: pieces[0], owned };
    // A tensor spanning shards: assemble only its own bytes.
    const bytes = new Uint8Array(length);
    let o = 0;
    for (const p of pieces) { bytes.set(p, o); o += p.length; }
    return { entry, bytes, owned: true };
  }

  async close(): Promise<void> { await Promise.all(this.stores.map((s) => s.close())); }
}

/** Fetches a model.json, reading at most the size limit. */
async function readRemote(url: string, fetchFn: typeof fetch): Promise<Uint8Array> {
  const r = await fetchFn(url);
  if (!r.ok) throw new Error(`fetching ${url} failed: HTTP ${r.status}`);
  const got = await readBody(r, MAX_MODEL_JSON_BYTES);
  if ('overLimit' in got) throw new Error(`${url} is larger than the ${MAX_MODEL_JSON_BYTES}-byte limit for a model.json`);
  if ('short' in got) throw new Error(`fetching ${url}: the transfer ended after ${got.got} of ${got.contentLength} bytes`);
  return got.bytes;
}

/** Reads a local model.json, refusing one above the size limit before reading it. */
async function readLocal(file: string): Promise<Uint8Array> {
  const fs = await nodeFs();
  try {
    const { size } = await fs.stat(file);
    if (size > MAX_MODEL_JSON_BYTES) throw new Error(`${file} is larger than the ${MAX_MODEL_JSON_BYTES}-byte limit for a model.json`);
    return new Uint8Array(await fs.readFile(file));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw code ? new Error(`cannot read ${file}: ${code}`) : e;
  }
}
