/**
 * Reading a converted component (`model.json` + shards) as a {@link WeightSource}, in Node or the browser.
 *
 * Tensors written by `tgate convert` are already in our layouts (HWIO convolutions, [in,out] linears), so
 * the reader sets `layoutConverted` and loading needs no transposes. This file has no static Node imports:
 * the browser bundle must not pull in `fs`.
 */
import { isRemote, joinLocation, readLocalFile } from './location.js';
import type { WeightSource } from '../nn/module.js';
import { fetchBytes } from './http-fetch.js';
import type { TfjsModelJson, TfjsWeightEntry, TgateMetadata } from './tfjs-manifest.js';
import { decodeStored } from './tfjs-quantize.js';
import { FetchShardStore, FileShardStore, type ShardStore, type TfjsOpenOptions } from './tfjs-shard-stores.js';
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
   * Opens `location`: a folder or its `model.json`, as a local path (Node) or a URL. Shard paths must stay
   * inside model.json's folder (or URL): no `..`, absolute path or other origin.
   */
  static async open(location: string, opts: TfjsOpenOptions = {}): Promise<TfjsWeightSource> {
    const url = isRemote(location, opts.fetch);
    const jsonLoc = /\.json$/i.test(location) ? location : joinLocation(location, 'model.json');
    const bytes = url
      ? await fetchBytes(jsonLoc, opts, MAX_MODEL_JSON_BYTES, 'model.json')
      : await readLocalFile(jsonLoc, MAX_MODEL_JSON_BYTES, 'model.json');
    const { json, groups } = parseModelJson(bytes!, jsonLoc);
    // Relative URLs resolve against the page (browser); in Node a URL must be absolute.
    const dir = url
      ? new URL('.', new URL(jsonLoc, typeof window !== 'undefined' ? window.location.href : undefined)).href
      : jsonLoc.replace(/[\\/][^\\/]*$/, '') || '.';
    const stores = json.weightsManifest.map((g, gi): ShardStore => {
      const files = g.paths.map((p) => joinLocation(dir, p, `${jsonLoc}: group ${gi}: shard path`));
      return url ? new FetchShardStore(files, opts, groups[gi].declared, groups[gi].total) : new FileShardStore(files, groups[gi].declared);
    });
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
