/**
 * Reading a converted component (`model.json` + shards) as a {@link WeightSource}, in Node or the browser.
 *
 * Tensors written by `tgate convert` are already in our layouts (HWIO convolutions, [in,out] linears), so
 * the reader sets `layoutConverted` and loading needs no transposes. This file has no static Node imports:
 * the browser bundle must not pull in `fs`.
 */
import { isRemote } from './location.js';
import type { WeightSource } from '../nn/module.js';
import type { TfjsModelJson, TfjsWeightEntry, TgateMetadata } from './tfjs-manifest.js';
import { decodeStored, storedByteLength } from './tfjs-quantize.js';
import { FetchShardStore, FileShardStore, nodeFs, type ShardStore, type TfjsOpenOptions } from './tfjs-shard-stores.js';

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
