/**
 * The one way the package reads from the network. Every request (model_index.json, configs, tokenizer files,
 * model.json, shards, HttpRangeSource's ranges) goes through {@link openUrl}: the caller's `fetch`, an idle
 * timeout and the caller's AbortSignal, with errors that name the URL.
 *
 * The timeout counts time without progress: it restarts when the response arrives and then with every
 * {@link PROGRESS_BYTES} of body received. So a slow transfer that keeps moving is never cut, while a server
 * that never answers, or trickles a byte every few seconds, fails within one window. Every await on the
 * network is raced against the watchdog, so even a custom `fetch` that ignores `signal` cannot hang a load.
 */
import { readBody, type BodyGuard, type BodyProblem } from './http-body.js';

/** Network options shared by every loader (`loadPipeline`, `loadModel`, `TfjsWeightSource`, tokenizers). */
export interface NetOptions {
  /** fetch to use for URLs (default: the global fetch). */
  fetch?: typeof fetch;
  /** Stops every request of the load; it then fails with an `AbortError` (`error.name === 'AbortError'`). */
  signal?: AbortSignal;
  /**
   * Milliseconds a request may go without progress (no response yet, or less than 1 KiB of body received)
   * before it fails with an error naming the URL. Default 60,000; `0` or `Infinity` turns the timeout off.
   */
  timeoutMs?: number;
}

/** The default idle timeout of a request. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Bytes of body that count as progress (restart the idle timeout). */
export const PROGRESS_BYTES = 1024;

/** An `AbortError` naming what was being read (the signal's reason, when it has one, is the `cause`). */
export function abortError(what: string, reason?: unknown): Error {
  const e = new Error(`${what}: aborted`, reason === undefined ? undefined : { cause: reason });
  e.name = 'AbortError';
  return e;
}

/** Throws an `AbortError` when `signal` is aborted (between steps of a load that is not a request). */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(what, signal.reason);
}

/** Watches one request: the idle timer, the caller's signal, and the failure every network await races. */
class Watchdog implements BodyGuard {
  private readonly controller = new AbortController();
  private timer?: ReturnType<typeof setTimeout>;
  private sinceReset = 0;
  private gotResponse = false;
  private readonly failed: Promise<never>;
  private reject!: (e: Error) => void;
  private readonly ms: number;
  private readonly onAbort = (): void => this.stop(abortError(this.url, this.signal?.reason));

  constructor(private readonly url: string, o: NetOptions, private readonly signal = o.signal) {
    this.failed = new Promise<never>((_, reject) => { this.reject = reject; });
    this.failed.catch(() => undefined);
    const ms = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(typeof ms === 'number' && ms >= 0)) throw new Error(`timeoutMs must be a number ≥ 0 (0 = no timeout), got ${String(ms)}`);
    this.ms = ms === 0 ? Infinity : ms;
    signal?.addEventListener('abort', this.onAbort, { once: true });
    this.arm();
  }

  /** The signal given to fetch: aborted on timeout, on the caller's abort, or when the transfer is closed. */
  get fetchSignal(): AbortSignal { return this.controller.signal; }

  private arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (!Number.isFinite(this.ms)) return;
    this.timer = setTimeout(() => {
      this.stop(new Error(this.gotResponse
        ? `${this.url}: the transfer stalled (less than 1 KiB in ${this.ms} ms); check the server or raise timeoutMs`
        : `${this.url}: no response within ${this.ms} ms; check the server or raise timeoutMs`));
    }, this.ms);
    // A watchdog never keeps Node alive on its own.
    (this.timer as { unref?: () => void }).unref?.();
  }

  private stop(e: Error): void {
    this.reject(e);
    this.controller.abort(e);
    this.close();
  }

  /** `p`, unless the request times out or is aborted first. */
  wait<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.failed]);
  }

  /** The response arrived. */
  responded(): void {
    this.gotResponse = true;
    this.arm();
  }

  /** `n` more bytes of body arrived. */
  progress(n: number): void {
    this.sinceReset += n;
    if (this.sinceReset >= PROGRESS_BYTES) {
      this.sinceReset = 0;
      this.arm();
    }
  }

  /** Stops watching (the transfer is done); the caller's signal is let go. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.signal?.removeEventListener('abort', this.onAbort);
  }
}

/** A response being read: its body is read once, bounded, under the same watchdog. */
export interface Transfer {
  readonly url: string;
  readonly response: Response;
  /** Reads the body, at most `max` bytes (see `readBody`); ends the transfer. */
  read(max: number, onChunk?: (got: number) => void): Promise<{ bytes: Uint8Array } | BodyProblem>;
  /** Drops the body unread; ends the transfer. */
  cancel(): Promise<void>;
}

/**
 * Sends one request under the idle timeout and `signal`; the caller must `read` or `cancel` the body. A
 * network failure (refused, reset) is an error naming the URL.
 */
export async function openUrl(url: string, o: NetOptions = {}, init: RequestInit = {}): Promise<Transfer> {
  throwIfAborted(o.signal, url);
  const dog = new Watchdog(url, o);
  let response: Response;
  try {
    response = await dog.wait((o.fetch ?? fetch)(url, { ...init, signal: dog.fetchSignal }));
  } catch (e) {
    dog.close();
    throw named(url, e);
  }
  dog.responded();
  const end = async <T>(p: () => Promise<T>): Promise<T> => {
    try {
      return await p();
    } catch (e) {
      throw named(url, e);
    } finally {
      dog.close();
    }
  };
  return {
    url,
    response,
    read: (max, onChunk) => end(() => readBody(response, max, onChunk, dog)),
    cancel: () => end(async () => { await response.body?.cancel().catch(() => undefined); }),
  };
}

/**
 * GETs `url` whole, at most `maxBytes`: `undefined` for HTTP 404 when `allowMissing`, an error naming the URL
 * for any other failure, a body over the bound or a short transfer. `what` names the file in the limit error.
 */
export async function fetchBytes(
  url: string, o: NetOptions, maxBytes: number, what = 'file', allowMissing = false,
): Promise<Uint8Array | undefined> {
  const t = await openUrl(url, o);
  if (allowMissing && t.response.status === 404) { await t.cancel(); return undefined; }
  if (!t.response.ok) { await t.cancel(); throw new Error(`fetching ${url} failed: HTTP ${t.response.status}`); }
  const got = await t.read(maxBytes);
  if ('overLimit' in got) throw new Error(`${url} is larger than the ${maxBytes}-byte limit for a ${what}`);
  if ('short' in got) throw new Error(`fetching ${url}: the transfer ended after ${got.got} of ${got.contentLength} bytes`);
  return got.bytes;
}

/** A network error as one naming the URL (AbortErrors and our own messages, which name it already, kept). */
function named(url: string, e: unknown): Error {
  if (!(e instanceof Error)) return new Error(`fetching ${url} failed: ${String(e)}`);
  if (e.message.includes(url)) return e;
  if (e.name === 'AbortError') return abortError(url, e);
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message;
  return new Error(`fetching ${url} failed: ${e.message}${detail && !e.message.includes(detail) ? ` (${detail})` : ''}`, { cause: e });
}
