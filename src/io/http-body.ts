/**
 * Reading an HTTP response body with a bound: what a server sends is untrusted, so a body is never read past
 * the size the caller expects, whatever `Content-Length` says (or does not say).
 */

/** What watches a transfer (http-fetch.ts): every read is raced against its timeout and abort. */
export interface BodyGuard {
  wait<T>(p: Promise<T>): Promise<T>;
  progress(n: number): void;
}

/** Why a body was refused: `overLimit` (more than `max` bytes) or `short` (fewer than Content-Length). */
export type BodyProblem = { overLimit: true; contentLength?: number } | { short: true; got: number; contentLength: number };

/**
 * Reads `r`'s body, at most `max` bytes: more is `{ overLimit }` (the rest is cancelled, not downloaded), a
 * transfer ending before its Content-Length is `{ short }`. `onChunk` sees the running byte count; `guard`
 * (the request's watchdog) bounds the wait for each chunk.
 */
export async function readBody(
  r: Response, max: number, onChunk?: (got: number) => void, guard?: BodyGuard,
): Promise<{ bytes: Uint8Array } | BodyProblem> {
  // Content-Length counts encoded bytes when the body is compressed: only trust it without an encoding.
  const declared = r.headers.get('content-encoding') ? undefined : contentLength(r);
  if (declared !== undefined && declared > max) {
    await r.body?.cancel().catch(() => undefined);
    return { overLimit: true, contentLength: declared };
  }
  const parts: Uint8Array[] = [];
  let got = 0;
  if (r.body && typeof r.body.getReader === 'function') {
    const reader = r.body.getReader();
    for (;;) {
      const { done, value } = await (guard ? guard.wait(reader.read()) : reader.read());
      if (done) break;
      guard?.progress(value.length);
      got += value.length;
      if (got > max) {
        await reader.cancel().catch(() => undefined);
        return { overLimit: true, contentLength: declared };
      }
      parts.push(value);
      onChunk?.(got);
    }
  } else {
    const b = new Uint8Array(await (guard ? guard.wait(r.arrayBuffer()) : r.arrayBuffer()));
    if (b.length > max) return { overLimit: true, contentLength: declared };
    parts.push(b);
    got = b.length;
  }
  if (declared !== undefined && got !== declared) return { short: true, got, contentLength: declared };
  if (parts.length === 1) return { bytes: parts[0] };
  const bytes = new Uint8Array(got);
  let o = 0;
  for (const p of parts) { bytes.set(p, o); o += p.length; }
  return { bytes };
}

/** The response's Content-Length as a safe integer, or undefined when absent or malformed. */
export function contentLength(r: Response): number | undefined {
  const h = r.headers.get('content-length');
  if (h === null || !/^\s*\d{1,16}\s*$/.test(h)) return undefined;
  const n = Number(h);
  return Number.isSafeInteger(n) ? n : undefined;
}
