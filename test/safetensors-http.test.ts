/**
 * HttpRangeSource against real HTTP servers on 127.0.0.1: one that honours `Range` (with and without
 * read-ahead: the requests sent are exactly the windows the read-ahead rule predicts), one that ignores it (200
 * with the whole file: read once, then served from memory), and ones that answer ranges wrongly.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DEFAULT_READ_AHEAD_BYTES, HttpRangeSource, SafetensorsError, SafetensorsFile, encodeSafetensors, type HttpRangeOptions,
} from '../src/io/safetensors.js';
import { openSafetensors } from '../src/io/node-source.js';
import { fixture } from './support/helpers.js';

type Mode = 'ranges' | 'ignore-range' | 'wrong-content-range' | 'short-206' | 'longer-than-head' | 'head-without-length';

interface Server { url: string; requests: { method: string; range?: string }[]; bodyBytes: number; close(): Promise<void> }

async function serve(file: Uint8Array, mode: Mode): Promise<Server> {
  const s: Server = { url: '', requests: [], bodyBytes: 0, close: async () => undefined };
  const server = http.createServer((req, res) => {
    s.requests.push({ method: req.method!, range: req.headers.range });
    const send = (status: number, headers: Record<string, string | number>, body?: Uint8Array) => {
      res.writeHead(status, headers);
      if (req.method === 'HEAD' || !body) { res.end(); return; }
      s.bodyBytes += body.length;
      res.end(body);
    };
    if (req.method === 'HEAD') { send(200, mode === 'head-without-length' ? { 'transfer-encoding': 'chunked' } : { 'content-length': file.length }); return; }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (mode === 'ignore-range' || !m) { send(200, { 'content-length': file.length }, file); return; }
    if (mode === 'longer-than-head') { const b = new Uint8Array(file.length + 4); b.set(file); send(200, { 'content-length': b.length }, b); return; }
    const begin = Number(m[1]);
    const end = Number(m[2]) + 1;
    if (mode === 'wrong-content-range') {
      // The bytes of the next range, honestly labelled: a server bug that must not shift tensors.
      const b = file.subarray(begin + 1, end + 1);
      send(206, { 'content-length': b.length, 'content-range': `bytes ${begin + 1}-${end}/${file.length}` }, b);
      return;
    }
    const b = file.subarray(begin, mode === 'short-206' ? end - 1 : end);
    send(206, { 'content-length': b.length, 'content-range': `bytes ${begin}-${end - 1}/${file.length}` }, b);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m.safetensors`;
  s.close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  return s;
}

/** A file of many small tensors (each read is one range request) of about 600 KB. */
function manyTensors(): { bytes: Uint8Array; values: Record<string, Float32Array> } {
  const values: Record<string, Float32Array> = {};
  for (let i = 0; i < 150; i++) values[`t${i}`] = Float32Array.from({ length: 1000 }, (_, j) => i * 1000 + j);
  const bytes = encodeSafetensors(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { values: v, shape: [v.length] }])));
  return { bytes, values };
}

async function readAll(src: HttpRangeSource): Promise<Record<string, Float32Array>> {
  const f = await SafetensorsFile.open(src);
  const out: Record<string, Float32Array> = {};
  for (const k of f.keys()) out[k] = (await f.readValues(k)).values as Float32Array;
  return out;
}

describe('HttpRangeSource', () => {
  const { bytes, values } = manyTensors();

  test('a server that honours Range, readAheadBytes 0: one request per tensor, only the bytes asked for', async () => {
    const s = await serve(bytes, 'ranges');
    try {
      expect(await readAll(new HttpRangeSource(s.url, fetch, { readAheadBytes: 0 }))).toEqual(values);
      expect(s.bodyBytes).toBe(bytes.length);
      expect(s.requests.length).toBe(1 + 2 + 150);
    } finally { await s.close(); }
  });

  test('a server that honours Range, default read-ahead: a 600 KB file is one range request after the HEAD', async () => {
    const s = await serve(bytes, 'ranges');
    try {
      expect(await readAll(new HttpRangeSource(s.url))).toEqual(values);
      expect(s.requests).toEqual([{ method: 'HEAD' }, { method: 'GET', range: `bytes=0-${bytes.length - 1}` }]);
      expect(s.bodyBytes).toBe(bytes.length);
    } finally { await s.close(); }
  });

  test('a server that ignores Range: the whole file is read once, not once per tensor', async () => {
    const s = await serve(bytes, 'ignore-range');
    try {
      expect(await readAll(new HttpRangeSource(s.url))).toEqual(values);
      const gets = s.requests.filter((r) => r.method === 'GET').length;
      console.log(`ignore-range server: ${s.requests.length} requests (${gets} GET), ${s.bodyBytes} body bytes for a ${bytes.length}-byte file`);
      expect(gets).toBe(1);
      expect(s.requests.length).toBe(2);
      expect(s.bodyBytes).toBe(bytes.length);
    } finally { await s.close(); }
  });

  test('a server that ignores Range, for a file above the whole-file limit: a clear error', async () => {
    const s = await serve(bytes, 'ignore-range');
    try {
      const err = await readAll(new HttpRangeSource(s.url, fetch, { maxWholeFileBytes: 1000 })).then(() => null, (e: Error) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect(err!.message).toContain(s.url);
      expect(err!.message).toMatch(/ignores Range requests.*larger than the 1000-byte limit/);
    } finally { await s.close(); }
  });

  test('a whole-file answer longer than HEAD said is an error', async () => {
    const s = await serve(bytes, 'longer-than-head');
    try {
      await expect(readAll(new HttpRangeSource(s.url))).rejects.toThrow(/m\.safetensors.*more than the \d+ bytes/);
    } finally { await s.close(); }
  });

  test('a 206 whose Content-Range is not the range asked for is an error, not shifted bytes', async () => {
    const s = await serve(bytes, 'wrong-content-range');
    try {
      await expect(readAll(new HttpRangeSource(s.url))).rejects.toThrow(/m\.safetensors: .*Content-Range "bytes 1-\d+\/\d+" for the request of bytes 0-\d+ of \d+/);
    } finally { await s.close(); }
  });

  test('a HEAD without Content-Length is an error saying so (was: read as a 0-byte file)', async () => {
    const s = await serve(bytes, 'head-without-length');
    try {
      await expect(readAll(new HttpRangeSource(s.url))).rejects.toThrow(/m\.safetensors: HEAD request failed \(HTTP 200\) or gave no valid Content-Length/);
    } finally { await s.close(); }
  });

  test('a short 206 is an error', async () => {
    const s = await serve(bytes, 'short-206');
    try {
      await expect(readAll(new HttpRangeSource(s.url))).rejects.toThrow(new RegExp(`m\\.safetensors: .*range request 0-${bytes.length - 1} returned ${bytes.length - 1} bytes`));
      await expect(readAll(new HttpRangeSource(s.url, fetch, { readAheadBytes: 0 }))).rejects.toThrow(/m\.safetensors: .*range request 0-7 returned 7 bytes/);
    } finally { await s.close(); }
  });
});

/**
 * The Range headers the read-ahead rule predicts for reads in this order: a read outside the latest window opens
 * a new one from its start, of at least `ahead` bytes, asking only for what follows the old one if it starts in it.
 */
function predictWindows(reads: [number, number][], size: number, ahead: number): string[] {
  const out: string[] = [];
  let w: [number, number] | undefined;
  for (const [b, e] of reads) {
    if (e <= b || (w && b >= w[0] && e <= w[1])) continue;
    const from = w && b >= w[0] && b < w[1] ? w[1] : b;
    w = [b, Math.min(size, Math.max(e, b + ahead))];
    out.push(`bytes=${from}-${w[1] - 1}`);
  }
  return out;
}

/** The reads SafetensorsFile makes: the length, the header, then `keys` in this order. */
function readsOf(f: SafetensorsFile, headerBytes: number, keys = f.keys()): [number, number][] {
  return [[0, 8], [8, 8 + headerBytes], ...keys.map((k): [number, number] => [f.info(k).begin, f.info(k).end])];
}

const headerBytes = (file: Uint8Array) => Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));

/** ~30 MB: 400 F32 tensors of 4–52 KB, two of them (9.6 MB each) larger than the default window. */
function largeFile(): { bytes: Uint8Array; big: number } {
  const tensors: Record<string, { values: Float32Array; shape: number[] }> = {};
  let big = 0;
  for (let i = 0; i < 400; i++) {
    const n = i % 200 === 100 ? 2_400_000 : 1000 + ((i * 7919) % 12000);
    if (n * 4 > DEFAULT_READ_AHEAD_BYTES) big++;
    const v = new Float32Array(n);
    for (let j = 0; j < n; j++) v[j] = i + j / n;
    tensors[`t${String(i).padStart(3, '0')}`] = { values: v, shape: [n] };
  }
  return { bytes: encodeSafetensors(tensors), big };
}

describe('HttpRangeSource read-ahead', () => {
  const { bytes, big } = largeFile();
  const MiB = 1024 ** 2;

  /** Opens `file` over a Range server and reads every tensor (in `order`, or file order; `together`: all at once). */
  async function readThrough(file: Uint8Array, opts: HttpRangeOptions, o: { together?: boolean; order?: (keys: string[]) => string[] } = {}) {
    const s = await serve(file, 'ranges');
    try {
      const f = await SafetensorsFile.open(new HttpRangeSource(s.url, fetch, opts));
      const keys = (o.order ?? ((k) => k))(f.keys());
      const read = (k: string) => f.source.read(f.info(k).begin, f.info(k).end);
      const got = o.together ? await Promise.all(keys.map(read)) : [];
      if (!o.together) for (const k of keys) got.push(await read(k));
      const wrong = keys.filter((k, i) => !sameBytes(got[i], file.subarray(f.info(k).begin, f.info(k).end)));
      return { f, keys, wrong, requests: s.requests, bodyBytes: s.bodyBytes };
    } finally { await s.close(); }
  }

  test('the LoRA fixture: one range request after the HEAD (was 2 + one per tensor), values equal the local file', async () => {
    const path = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');
    const file = new Uint8Array(readFileSync(path));
    const local = await openSafetensors(path);
    const counts: Record<string, number> = {};
    try {
      for (const readAheadBytes of [0, undefined]) {
        const s = await serve(file, 'ranges');
        try {
          const f = await SafetensorsFile.open(new HttpRangeSource(s.url, fetch, { readAheadBytes }));
          for (const k of f.keys()) expect([k, (await f.readValues(k)).values]).toEqual([k, (await local.readValues(k)).values]);
          expect(s.requests.filter((r) => r.method === 'GET').every((r) => /^bytes=\d+-\d+$/.test(r.range ?? ''))).toBe(true);
          counts[String(readAheadBytes ?? 'default')] = s.requests.length;
          expect(s.requests.length).toBe(readAheadBytes === 0 ? 1 + 2 + f.keys().length : 2);
        } finally { await s.close(); }
      }
    } finally { await local.close(); }
    console.log(`LoRA fixture (${file.length} bytes): ${counts[0]} requests with readAheadBytes 0, ${counts.default} with the default`);
  });

  test('a 30 MB file of 400 tensors: the requests are exactly the predicted windows, every tensor byte-exact', async () => {
    const lines: string[] = [];
    for (const readAheadBytes of [0, MiB, DEFAULT_READ_AHEAD_BYTES]) {
      const r = await readThrough(bytes, { readAheadBytes });
      expect(r.wrong).toEqual([]);
      const ranges = r.requests.map((q) => q.range ?? q.method);
      expect(ranges).toEqual(['HEAD', ...predictWindows(readsOf(r.f, headerBytes(bytes)), bytes.length, readAheadBytes)]);
      // Read in file order, no byte travels twice.
      expect(r.bodyBytes).toBe(bytes.length);
      // Without read-ahead one request per read; with it at most one per window-length of file, plus the larger tensors.
      if (readAheadBytes === 0) expect(ranges.length).toBe(1 + 2 + 400);
      else expect(ranges.length - 1).toBeLessThanOrEqual(Math.ceil(bytes.length / readAheadBytes) + 400 * Number(readAheadBytes < 52_000) + big);
      lines.push(`readAheadBytes ${readAheadBytes}: ${ranges.length} requests, ${r.bodyBytes} body bytes`);
    }
    console.log(`${bytes.length}-byte file of 400 tensors (${big} larger than ${DEFAULT_READ_AHEAD_BYTES} bytes):\n${lines.join('\n')}`);
  }, 60_000);

  test('concurrent reads: in file order they share in-flight windows (same requests as one by one); in any order the bytes are right', async () => {
    const seq = await readThrough(bytes, { readAheadBytes: MiB });
    const together = await readThrough(bytes, { readAheadBytes: MiB }, { together: true });
    expect(together.wrong).toEqual([]);
    expect(together.requests).toEqual(seq.requests);
    // A fixed shuffle: windows are replaced before their reads are done, which costs requests, never bytes.
    const shuffle = (keys: string[]) => keys.map((k, i) => [k, (i * 7919) % 401] as const).sort((a, b) => a[1] - b[1]).map(([k]) => k);
    const shuffled = await readThrough(bytes, { readAheadBytes: MiB }, { together: true, order: shuffle });
    expect(shuffled.wrong).toEqual([]);
    expect(shuffled.requests.length).toBeLessThanOrEqual(1 + 2 + 400);
    console.log(`1 MiB window: ${seq.requests.length} requests one by one, ${together.requests.length} all at once in file order, ${shuffled.requests.length} all at once shuffled`);
  }, 60_000);

  test('readAheadBytes must be a whole number ≥ 0; a read past the end of the file is an error naming it', async () => {
    for (const bad of [-1, 1.5, NaN, Infinity]) expect(() => new HttpRangeSource('http://x/m.safetensors', fetch, { readAheadBytes: bad })).toThrow(/readAheadBytes must be a whole number of bytes ≥ 0/);
    const s = await serve(bytes, 'ranges');
    try {
      const src = new HttpRangeSource(s.url);
      await expect(src.read(bytes.length - 4, bytes.length + 4)).rejects.toThrow(new RegExp(`m\\.safetensors: a read of bytes ${bytes.length - 4}-${bytes.length + 3} goes past the end of the ${bytes.length}-byte file`));
      expect(s.requests).toEqual([{ method: 'HEAD' }]);
    } finally { await s.close(); }
  });
});
