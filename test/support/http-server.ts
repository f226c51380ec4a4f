/**
 * A real HTTP server on 127.0.0.1 for loading tests: serves a folder's files (or files in memory), optionally
 * answering `Range: bytes=a-b` with 206, and can misbehave per path (never answer, trickle, cut the body),
 * counting every request it receives.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/** How the server answers a path: normally, never, 1 byte per `everyMs`, in `bytes`-byte chunks, or cut half-way. */
export type Behaviour =
  | { kind: 'silent' }
  | { kind: 'trickle'; everyMs: number }
  | { kind: 'chunks'; bytes: number; everyMs: number }
  | { kind: 'cut' };

export interface TestServer {
  /** Base URL, ending with '/'. */
  url: string;
  /** Paths requested (method and path, then the range when one was served), in order. */
  hits: string[];
  /** Bytes of bodies sent. */
  sent: number;
  /** Makes `relPath` misbehave. */
  behave(relPath: string, b: Behaviour): void;
  close(): Promise<void>;
}

/** Serves `root` (a folder, or a map of relative path → bytes) read-only; `ranges`: honour single byte ranges. */
export async function startServer(root: string | Map<string, Uint8Array>, o: { ranges?: boolean } = {}): Promise<TestServer> {
  const behaviours = new Map<string, Behaviour>();
  const timers = new Set<NodeJS.Timeout>();
  const s: TestServer = { url: '', hits: [], sent: 0, behave: (p, b) => { behaviours.set(p, b); }, close: async () => undefined };
  const read = (rel: string): Uint8Array | undefined => {
    if (typeof root !== 'string') return root.get(rel);
    const file = path.join(root, rel);
    if (!file.startsWith(root + path.sep)) return undefined;
    try { return fs.statSync(file).isFile() ? fs.readFileSync(file) : undefined; } catch { return undefined; }
  };
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\//, '');
    const range = o.ranges && req.method === 'GET' ? /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '') : null;
    s.hits.push(`${req.method} /${rel}${range ? ` ${range[0]}` : ''}`);
    const b = behaviours.get(rel);
    if (b?.kind === 'silent') return;
    const file = read(rel);
    if (!file) { res.writeHead(404); res.end(); return; }
    const [first, last] = range ? [Number(range[1]), Number(range[2])] : [0, file.length - 1];
    if (range && (first > last || last >= file.length)) { res.writeHead(416, { 'content-range': `bytes */${file.length}` }); res.end(); return; }
    const body = file.subarray(first, last + 1);
    res.writeHead(range ? 206 : 200, { 'content-length': body.length, ...(range ? { 'content-range': `bytes ${first}-${last}/${file.length}` } : {}) });
    if (req.method === 'HEAD') { res.end(); return; }
    if (!b) { s.sent += body.length; res.end(body); return; }
    if (b.kind === 'cut') {
      const half = body.subarray(0, body.length >> 1);
      s.sent += half.length;
      res.write(half, () => res.destroy());
      return;
    }
    const step = b.kind === 'trickle' ? 1 : b.bytes;
    let at = 0;
    const t = setInterval(() => {
      if (res.destroyed || at >= body.length) { clearInterval(t); timers.delete(t); res.end(); return; }
      const piece = body.subarray(at, at + step);
      at += piece.length;
      s.sent += piece.length;
      res.write(piece);
    }, b.everyMs);
    timers.add(t);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  s.close = () => new Promise((r) => {
    for (const t of timers) clearInterval(t);
    server.closeAllConnections();
    server.close(() => r());
  });
  return s;
}

/** A fetch that forwards to the global one and records each URL and whether it carried a signal. */
export function countingFetch(): { fetch: typeof fetch; calls: { url: string; signal: boolean }[] } {
  const calls: { url: string; signal: boolean }[] = [];
  const f = ((input: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(input instanceof Request ? input.url : input), signal: !!init?.signal });
    return fetch(input, init);
  }) as typeof fetch;
  return { fetch: f, calls };
}
