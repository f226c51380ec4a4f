/**
 * A safetensors file over HTTP(S), read by `Range` requests so only the parts of the file asked for travel.
 *
 * Read-ahead: safetensors readers ask for the 8-byte length, the header, then one tensor after another in file
 * order, so one request per read would cost a round trip per tensor (hundreds for a UNet). A read outside the
 * bytes held fetches a window from its start of at least `readAheadBytes` (clipped to the file) and keeps that
 * one window; the following reads inside it need no request. A read that starts inside the window but runs past
 * its end (a tensor across the window's end) asks only for the bytes after the window, so with reads in file
 * order no byte travels twice. A read that falls in a window still being fetched waits for that request
 * instead of sending its own. Windows are never written to after they arrive: a read of a
 * whole window gets the window itself, any other read its own copy, so a caller holding bytes never keeps a
 * larger window alive and no later read changes them.
 *
 * A server that ignores `Range` answers 200 with the whole file: then the whole body is read once (if the
 * file's size, known from HEAD, is within `maxWholeFileBytes`) and every later read is served from it, instead
 * of downloading the file again for each window. A 206 must carry exactly the bytes asked for.
 */
import { openUrl, type NetOptions, type Transfer } from './http-fetch.js';
import { SafetensorsError } from './safetensors-header.js';
import type { ByteSource } from './safetensors.js';

/** Options of {@link HttpRangeSource}: `signal` and `timeoutMs` as every network read has ({@link NetOptions}). */
export interface HttpRangeOptions extends Omit<NetOptions, 'fetch'> {
  /**
   * Largest file read whole when the server ignores `Range` (default 1 GiB); a larger one is an error that
   * says to serve it from a server that supports ranges.
   */
  maxWholeFileBytes?: number;
  /**
   * Fewest bytes one range request asks for (default {@link DEFAULT_READ_AHEAD_BYTES}, 8 MiB): a read of
   * bytes the source does not hold fetches them and what follows up to this many bytes from the read's
   * start, so the next tensors come without a request. The source holds one such window, at most
   * max(readAheadBytes, the largest single read). `0` fetches exactly the bytes of each read (one request per
   * tensor); a larger value means fewer round trips, and at most that many bytes per request fetched but never
   * used. Read-ahead pays off for reads in file order (as LoRA loading and `SafetensorsFile.open` make them);
   * for reads in random order, use `0`.
   */
  readAheadBytes?: number;
}

/**
 * The default read-ahead window. A LoRA or other file of up to 8 MiB is one range request after the HEAD; a
 * larger one about size / 8 MiB requests plus one per tensor larger than the window: SD-1.5's UNet, its 686
 * tensors read in file order, takes 207 instead of 688 in float32 (3.4 GB) and 147 in float16. An 8 MiB
 * request takes ~0.7 s at 100 Mbit/s, so a round trip of tens of ms is a small part of it, while the window
 * held stays small beside any model's weights and bounds what a skip over unread tensors can waste.
 */
export const DEFAULT_READ_AHEAD_BYTES = 8 * 1024 ** 2;

const DEFAULT_MAX_WHOLE = 1024 ** 3;

/** Bytes [begin, end) of the file: fetched, or being fetched. */
interface Window { begin: number; end: number; bytes: Promise<Uint8Array> }

/** `a` from byte `from`, then `b`, in one new buffer. */
async function joined(a: Promise<Uint8Array>, from: number, b: Promise<Uint8Array>): Promise<Uint8Array> {
  const [x, y] = await Promise.all([a, b]);
  const out = new Uint8Array(x.length - from + y.length);
  out.set(x.subarray(from));
  out.set(y, x.length - from);
  return out;
}

/** Fetches byte ranges over HTTP(S) with `Range` requests and read-ahead (see the module comment). */
export class HttpRangeSource implements ByteSource {
  private total?: Promise<number>;
  private known?: number;
  private whole?: Promise<Uint8Array>;
  private window?: Window;
  private readonly maxWhole: number;
  private readonly readAhead: number;
  private readonly net: NetOptions;

  constructor(readonly name: string, fetchFn: typeof fetch = fetch, opts: HttpRangeOptions = {}) {
    this.maxWhole = opts.maxWholeFileBytes ?? DEFAULT_MAX_WHOLE;
    this.readAhead = opts.readAheadBytes ?? DEFAULT_READ_AHEAD_BYTES;
    if (!Number.isSafeInteger(this.readAhead) || this.readAhead < 0) {
      throw new Error(`readAheadBytes must be a whole number of bytes ≥ 0 (0 = no read-ahead), got ${String(opts.readAheadBytes)}`);
    }
    this.net = { fetch: fetchFn, signal: opts.signal, timeoutMs: opts.timeoutMs };
  }

  private fail(problem: string): never {
    throw new SafetensorsError(this.name, problem);
  }

  /** The file's size from a HEAD request (sent once; again only if it failed). */
  size(): Promise<number> {
    if (!this.total) {
      const p = this.total = this.head();
      p.catch(() => { if (this.total === p) this.total = undefined; });
    }
    return this.total;
  }

  private async head(): Promise<number> {
    const t = await openUrl(this.name, this.net, { method: 'HEAD' });
    await t.cancel();
    const r = t.response;
    const h = r.headers.get('content-length');
    const len = h !== null && /^\s*\d{1,16}\s*$/.test(h) ? Number(h) : NaN;
    if (!r.ok || !Number.isSafeInteger(len)) this.fail(`HEAD request failed (HTTP ${r.status}) or gave no valid Content-Length (${JSON.stringify(h?.slice(0, 40) ?? null)})`);
    return this.known = len;
  }

  async read(begin: number, end: number): Promise<Uint8Array> {
    if (end <= begin) return new Uint8Array(0);
    // Without read-ahead the size is not needed (no HEAD): the server bounds the range.
    const size = this.readAhead > 0 ? await this.size() : this.known;
    if (size !== undefined && end > size) this.fail(`a read of bytes ${begin}-${end - 1} goes past the end of the ${size}-byte file`);
    if (this.whole) return (await this.whole).subarray(begin, end);
    let w = this.window;
    if (!w || begin < w.begin || end > w.end) {
      const wEnd = size === undefined ? end : Math.min(size, Math.max(end, begin + this.readAhead));
      // A read that starts in the window held (a tensor across its end) asks only for the bytes after it.
      const held = w && begin >= w.begin && begin < w.end ? w : undefined;
      const next: Window = {
        begin, end: wEnd,
        bytes: held ? joined(held.bytes, begin - held.begin, this.fetchRange(held.end, wEnd)) : this.fetchRange(begin, wEnd),
      };
      // A failed window is dropped, so a later read asks again; the reads waiting on it fail with it.
      next.bytes.catch(() => { if (this.window === next) this.window = undefined; });
      this.window = w = next;
    }
    const bytes = await w.bytes;
    return begin === w.begin && end === w.end ? bytes : bytes.slice(begin - w.begin, end - w.begin);
  }

  /** Bytes [begin, end) by one range request (or from the whole body, when the server ignores Range). */
  private async fetchRange(begin: number, end: number): Promise<Uint8Array> {
    const want = `${begin}-${end - 1}`;
    const t = await openUrl(this.name, this.net, { headers: { Range: `bytes=${want}` } });
    const r = t.response;
    if (r.status === 200) {
      // The server ignored Range: read this body once (another read may have started it already).
      if (this.whole) await t.cancel();
      this.whole ??= this.readWhole(t);
      return (await this.whole).subarray(begin, end);
    }
    if (r.status !== 206) {
      await t.cancel();
      this.fail(`range request ${want} failed with HTTP ${r.status}`);
    }
    const cr = r.headers.get('content-range');
    if (cr !== null) {
      const total = this.known;
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(cr.trim());
      if (!m || Number(m[1]) !== begin || Number(m[2]) !== end - 1 || (total !== undefined && m[3] !== '*' && Number(m[3]) !== total)) {
        await t.cancel();
        this.fail(`the server answered with Content-Range ${JSON.stringify(cr.slice(0, 80))} for the request of bytes ${want}${total !== undefined ? ` of ${total}` : ''}`);
      }
    }
    const got = await t.read(end - begin);
    if (!('bytes' in got) || got.bytes.length !== end - begin) {
      const n = 'bytes' in got ? got.bytes.length : 'short' in got ? got.got : `more than ${end - begin}`;
      this.fail(`range request ${want} returned ${n} bytes`);
    }
    return got.bytes;
  }

  private async readWhole(t: Transfer): Promise<Uint8Array> {
    const size = await this.size();
    if (size > this.maxWhole) {
      await t.cancel();
      this.fail(`the server ignores Range requests (it answered 200 with the whole file), and the file's ${size} bytes are larger than the ${this.maxWhole}-byte limit for reading it whole: serve it from a server that supports Range, or raise maxWholeFileBytes`);
    }
    const got = await t.read(size);
    if ('overLimit' in got) this.fail(`the server ignores Range requests and answered with more than the ${size} bytes its HEAD announced`);
    if ('short' in got || got.bytes.length !== size) {
      this.fail(`the server ignores Range requests and sent ${'short' in got ? got.got : got.bytes.length} of the ${size} bytes its HEAD announced`);
    }
    return got.bytes;
  }
}
