/**
 * HttpRangeSource against real HTTP servers on 127.0.0.1: one that honours `Range`, one that ignores it (200
 * with the whole file: read once, then served from memory), and ones that answer ranges wrongly.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpRangeSource, SafetensorsError, SafetensorsFile, encodeSafetensors } from '../src/io/safetensors.js';

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

  test('a server that honours Range: one request per tensor, only the bytes asked for', async () => {
    const s = await serve(bytes, 'ranges');
    try {
      expect(await readAll(new HttpRangeSource(s.url))).toEqual(values);
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
      await expect(readAll(new HttpRangeSource(s.url))).rejects.toThrow(/m\.safetensors: .*Content-Range "bytes 1-8\/\d+" for the request of bytes 0-7/);
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
      await expect(readAll(new HttpRangeSource(s.url))).rejects.toThrow(/m\.safetensors: .*range request 0-7/);
    } finally { await s.close(); }
  });
});
