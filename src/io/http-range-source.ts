/**
 * A safetensors file over HTTP(S), read by `Range` requests so only the tensors asked for travel.
 *
 * A server that ignores `Range` answers 200 with the whole file: then the whole body is read once (if the
 * file's size, known from HEAD, is within `maxWholeFileBytes`) and every later read is served from it, instead
 * of downloading the file again for each tensor. A 206 must carry exactly the bytes asked for.
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
}

const DEFAULT_MAX_WHOLE = 1024 ** 3;

/** Fetches byte ranges over HTTP(S) with `Range` requests (see the module comment for servers without). */
export class HttpRangeSource implements ByteSource {
  private total?: number;
  private whole?: Promise<Uint8Array>;
  private readonly maxWhole: number;
  private readonly net: NetOptions;

  constructor(readonly name: string, fetchFn: typeof fetch = fetch, opts: HttpRangeOptions = {}) {
    this.maxWhole = opts.maxWholeFileBytes ?? DEFAULT_MAX_WHOLE;
    this.net = { fetch: fetchFn, signal: opts.signal, timeoutMs: opts.timeoutMs };
  }

  private fail(problem: string): never {
    throw new SafetensorsError(this.name, problem);
  }

  async size(): Promise<number> {
    if (this.total === undefined) {
      const t = await openUrl(this.name, this.net, { method: 'HEAD' });
      await t.cancel();
      const r = t.response;
      const h = r.headers.get('content-length');
      const len = h !== null && /^\s*\d{1,16}\s*$/.test(h) ? Number(h) : NaN;
      if (!r.ok || !Number.isSafeInteger(len)) this.fail(`HEAD request failed (HTTP ${r.status}) or gave no valid Content-Length (${JSON.stringify(h?.slice(0, 40) ?? null)})`);
      this.total = len;
    }
    return this.total;
  }

  async read(begin: number, end: number): Promise<Uint8Array> {
    if (end <= begin) return new Uint8Array(0);
    if (this.whole) return (await this.whole).subarray(begin, end);
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
      const total = this.total;
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
