/**
 * Where a TF.js weight group's shards come from when reading: local files (Node, through `node:fs` loaded
 * on demand) or whole-shard fetches (any `fetch`, optionally kept in the Cache API). This file has no
 * static Node imports: the browser bundle must not pull in `fs`.
 */

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
export interface ShardStore {
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
export function nodeFs(): Promise<FsPromises> {
  fsMod ??= import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS) as Promise<FsPromises>;
  return fsMod;
}

/** Local shard files, read by byte range through one handle each (Node). */
export class FileShardStore implements ShardStore {
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
export class FetchShardStore implements ShardStore {
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
