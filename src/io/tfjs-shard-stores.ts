/**
 * Where a TF.js weight group's shards come from when reading: local files (Node, through `node:fs` loaded
 * on demand) or whole-shard fetches (any `fetch`, optionally kept in the Cache API). This file has no
 * static Node imports: the browser bundle must not pull in `fs`.
 */
import { readBody } from './http-body.js';
import { openUrl, type NetOptions, type Transfer } from './http-fetch.js';
import { nodeFs } from './location.js';
import { checkShardSize } from './tfjs-validate.js';

/** Progress of shard downloads (browser / http). */
export interface FetchProgress {
  loadedBytes: number;
  /** Known once every shard's size is known (always for folders written by `tgate convert`). */
  totalBytes?: number;
  shard: number;
  shardCount: number;
}

/** How a converted folder is opened; `fetch` (passing one forces URL mode), `signal` and `timeoutMs` as {@link NetOptions}. */
export interface TfjsOpenOptions extends NetOptions {
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


/** Local shard files, read by byte range through one handle each (Node). Sizes are checked against model.json's. */
export class FileShardStore implements ShardStore {
  private handles = new Map<number, Promise<import('node:fs/promises').FileHandle>>();
  private readonly sizes = new Map<number, number>();
  constructor(private readonly files: string[], private readonly declared?: number[]) {}
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
  /** The file's actual size (never the declared one: a longer or shorter file must not load). */
  async size(i: number): Promise<number> {
    let n = this.sizes.get(i);
    if (n === undefined) {
      n = (await (await this.fh(i)).stat()).size;
      checkShardSize(this.files[i], n, this.declared?.[i]);
      this.sizes.set(i, n);
    }
    return n;
  }
  async read(i: number, begin: number, end: number): Promise<{ bytes: Uint8Array; owned: boolean }> {
    const buf = new Uint8Array(end - begin);
    const fh = await this.fh(i);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, begin + got);
      if (bytesRead === 0) throw new Error(`weight shard ${this.files[i]} is truncated: wanted bytes ${begin}..${end} (the file shrank while it was read?)`);
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
 * stream order, and one spanning a boundary needs the two shards it touches. A shard is read up to its
 * declared size (or, undeclared, the group's total) and must have exactly the declared size.
 */
export class FetchShardStore implements ShardStore {
  private held: { i: number; bytes: Uint8Array }[] = [];
  private readonly known: (number | undefined)[];
  private loaded = 0;
  private pending = new Map<number, Promise<Uint8Array>>();
  constructor(
    private readonly urls: string[], private readonly opts: TfjsOpenOptions,
    private readonly declared: number[] | undefined, private readonly groupBytes: number,
  ) {
    this.known = urls.map((_, i) => declared?.[i]);
  }
  get count(): number { return this.urls.length; }

  private total(): number | undefined {
    return this.known.every((s) => s !== undefined) ? this.known.reduce((a, b) => a! + b!, 0) : undefined;
  }

  private async download(i: number): Promise<Uint8Array> {
    const url = this.urls[i];
    const cacheName = this.opts.cache === true ? 'tgate-tfjs-weights' : this.opts.cache || undefined;
    const cache = cacheName && typeof caches !== 'undefined' ? await caches.open(cacheName) : undefined;
    const cached = cache ? await cache.match(url) : undefined;
    const fromCache = !!cached;
    // A cached shard is read the same way as a fetched one (bounded, checked), through the same transfer API.
    const t = cached ? localTransfer(url, cached) : await openUrl(url, this.opts);
    if (!t.response.ok) {
      await t.cancel();
      throw new Error(`fetching weight shard ${url} failed: HTTP ${t.response.status}`);
    }
    const want = this.declared?.[i];
    const got = await t.read(want ?? this.groupBytes, (n) => {
      this.opts.onProgress?.({ loadedBytes: this.loaded + n, totalBytes: this.total(), shard: i, shardCount: this.count });
    });
    if ('overLimit' in got) {
      const size = got.contentLength ?? `more than ${want ?? this.groupBytes}`;
      checkShardSize(url, size, want);
      throw new Error(`${url} has ${size} bytes, more than all weights of its group need (${this.groupBytes})`);
    }
    if ('short' in got) throw new Error(`weight shard ${url}: the transfer ended after ${got.got} of ${got.contentLength} bytes`);
    const bytes = got.bytes;
    checkShardSize(url, bytes.length, want);
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

/** A response from the Cache API as a transfer (nothing to time out). */
function localTransfer(url: string, response: Response): Transfer {
  return {
    url, response,
    read: (max, onChunk) => readBody(response, max, onChunk),
    cancel: async () => { await response.body?.cancel().catch(() => undefined); },
  };
}
