/**
 * Loading over HTTP from real servers on 127.0.0.1 that misbehave: every request goes through one fetch path
 * with an idle timeout (no response, or a trickle of less than 1 KiB per window, fails naming the URL), honours
 * `signal`, uses the caller's `fetch`, and reads JSON and tokenizer files only up to a size bound.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, useBackend } from './support/helpers.js';
import { buildFolder, controlWeights, type ControlWeight } from './support/tfjs-folder.js';
import { countingFetch, startServer, type TestServer } from './support/http-server.js';
import { TfjsWeightSource } from '../src/io/tfjs-format.js';
import { HttpRangeSource, SafetensorsFile, encodeSafetensors, type HttpRangeOptions } from '../src/io/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { loadTokenizer } from '../src/tokenizers/index.js';
import { readConfig } from '../src/io/component-source.js';
import { convertPipeline } from '../src/convert/convert.js';

let work: string;
const servers: TestServer[] = [];
const serve = async (root: string | Map<string, Uint8Array>, o?: { ranges?: boolean }): Promise<TestServer> => {
  const s = await startServer(root, o);
  servers.push(s);
  return s;
};

beforeAll(async () => {
  await useBackend('cpu');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'load-net-'));
});
afterEach(async () => { await Promise.all(servers.splice(0).map((s) => s.close())); });
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Reads every weight of a TF.js folder at `url`. */
async function readAllTfjs(url: string, opts: Parameters<typeof TfjsWeightSource.open>[1] = {}): Promise<number> {
  const s = await TfjsWeightSource.open(url, opts);
  try {
    let n = 0;
    for (const k of s.keys()) n += (await s.read(k)).length;
    return n;
  } finally {
    await s.close();
  }
}

/** The error `p` rejects with and how long it took; fails the test when it resolves. */
async function failure(p: Promise<unknown>): Promise<{ e: Error; ms: number }> {
  const t0 = Date.now();
  const e = await p.then(() => null, (x: Error) => x);
  if (!e) throw new Error('expected a failure, but it succeeded');
  return { e, ms: Date.now() - t0 };
}

/**
 * A safetensors file served with ranges, opened with an 8 KiB read-ahead and its 32 KiB tensor `a` read; the
 * small `b` and `c` that follow lie in one window, not yet fetched.
 */
async function rangeFileAfterA(opts: HttpRangeOptions): Promise<{ s: TestServer; url: string; f: SafetensorsFile; bytes: Uint8Array }> {
  const t = (n: number, k: number) => ({ values: Float32Array.from({ length: n }, (_, i) => k + i), shape: [n] });
  const bytes = encodeSafetensors({ a: t(8192, 0), b: t(256, 1), c: t(256, 2) });
  const s = await serve(new Map([['m.safetensors', bytes]]), { ranges: true });
  const url = `${s.url}m.safetensors`;
  const f = await SafetensorsFile.open(new HttpRangeSource(url, fetch, { readAheadBytes: 8192, ...opts }));
  await f.readValues('a');
  return { s, url, f, bytes };
}

/** One weight of 16 KiB in one shard, so a body arrives in several chunks. */
const bigWeight: ControlWeight[] = [{ name: 'w', shape: [4096], mode: 'none', values: Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i)) }];

describe('idle timeout', () => {
  test('a server that never answers model.json fails within the timeout, naming the URL (was: no timeout at all)', async () => {
    const s = await serve(await buildFolder(controlWeights()));
    s.behave('model.json', { kind: 'silent' });
    const { e, ms } = await failure(readAllTfjs(s.url, { timeoutMs: 300 }));
    expect(e.message).toContain(`${s.url}model.json`);
    expect(e.message).toMatch(/no response within 300 ms/);
    expect(ms).toBeLessThan(3000);
  }, 10_000);

  test('a shard trickled 1 byte every 50 ms fails within the timeout (progress is ≥ 1 KiB per window)', async () => {
    const files = await buildFolder(bigWeight, 1 << 20);
    const s = await serve(files);
    s.behave('group1-shard1of1.bin', { kind: 'trickle', everyMs: 50 });
    const { e, ms } = await failure(readAllTfjs(s.url, { timeoutMs: 400 }));
    expect(e.message).toContain(`${s.url}group1-shard1of1.bin`);
    expect(e.message).toMatch(/less than 1 KiB in 400 ms/);
    expect(ms).toBeLessThan(3000);
  }, 10_000);

  test('a slow transfer that keeps making progress is not cut, however long it takes in total', async () => {
    const s = await serve(await buildFolder(bigWeight, 1 << 20));
    s.behave('group1-shard1of1.bin', { kind: 'chunks', bytes: 2048, everyMs: 100 });
    const t0 = Date.now();
    expect(await readAllTfjs(s.url, { timeoutMs: 400 })).toBe(4096);
    expect(Date.now() - t0).toBeGreaterThan(600);
  }, 10_000);

  test('a body cut half-way is an error naming the URL', async () => {
    const s = await serve(await buildFolder(bigWeight, 1 << 20));
    s.behave('group1-shard1of1.bin', { kind: 'cut' });
    const { e } = await failure(readAllTfjs(s.url, { timeoutMs: 2000 }));
    expect(e.message).toContain(`${s.url}group1-shard1of1.bin`);
  }, 10_000);

  test('HttpRangeSource: a silent server fails within the timeout, naming the URL', async () => {
    const bytes = encodeSafetensors({ a: { values: new Float32Array(8), shape: [8] } });
    const s = await serve(new Map([['m.safetensors', bytes]]));
    s.behave('m.safetensors', { kind: 'silent' });
    const { e, ms } = await failure(SafetensorsFile.open(new HttpRangeSource(`${s.url}m.safetensors`, fetch, { timeoutMs: 300 })));
    expect(e.message).toContain(`${s.url}m.safetensors`);
    expect(e.message).toMatch(/no response within 300 ms/);
    expect(ms).toBeLessThan(3000);
  }, 10_000);

  test('HttpRangeSource: a read-ahead window that stalls mid-transfer fails every read waiting on it; a later read asks again', async () => {
    const { s, url, f } = await rangeFileAfterA({ timeoutMs: 400 });
    s.behave('m.safetensors', { kind: 'trickle', everyMs: 50 });
    const before = s.hits.length;
    const results = await Promise.allSettled([f.readValues('b'), f.readValues('c')]);
    // b and c share one window, so one request, and both fail with its timeout.
    expect(s.hits.slice(before)).toEqual([`GET /m.safetensors bytes=${f.info('b').begin}-${f.info('c').end - 1}`]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const e = (r as PromiseRejectedResult).reason as Error;
      expect(e.message).toContain(url);
      expect(e.message).toMatch(/less than 1 KiB in 400 ms/);
    }
    // The failed window is not kept: once the server answers again, the read is sent again and succeeds.
    s.behave('m.safetensors', { kind: 'chunks', bytes: 1 << 20, everyMs: 1 });
    expect(Array.from((await f.readValues('c')).values.subarray(0, 3))).toEqual([2, 3, 4]);
    expect(s.hits.length).toBe(before + 2);
  }, 10_000);
});

describe('signal', () => {
  test('aborting while a server is silent stops the load with an AbortError naming the URL', async () => {
    const s = await serve(await buildFolder(controlWeights()));
    s.behave('model.json', { kind: 'silent' });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const { e, ms } = await failure(readAllTfjs(s.url, { signal: ac.signal }));
    expect(e.name).toBe('AbortError');
    expect(e.message).toContain(`${s.url}model.json`);
    expect(ms).toBeLessThan(2000);
  }, 10_000);

  test('an aborted signal sends no request at all', async () => {
    const s = await serve(await buildFolder(controlWeights()));
    const ac = new AbortController();
    ac.abort();
    const { e } = await failure(loadModel(s.url, { signal: ac.signal }));
    expect(e.name).toBe('AbortError');
    expect(s.hits).toEqual([]);
  });

  test('HttpRangeSource honours its signal mid-transfer', async () => {
    // This server ignores Range: the first read streams the whole file, slowly.
    const bytes = encodeSafetensors({ a: { values: new Float32Array(8192), shape: [8192] } });
    const s = await serve(new Map([['m.safetensors', bytes]]));
    s.behave('m.safetensors', { kind: 'trickle', everyMs: 20 });
    const ac = new AbortController();
    const src = new HttpRangeSource(`${s.url}m.safetensors`, fetch, { signal: ac.signal });
    setTimeout(() => ac.abort(), 150);
    const { e, ms } = await failure(SafetensorsFile.open(src).then((f) => f.readValues('a')));
    expect(e.name).toBe('AbortError');
    expect(ms).toBeLessThan(2000);
  }, 10_000);

  test('HttpRangeSource honours its signal while a read-ahead window is being fetched', async () => {
    const ac = new AbortController();
    const { s, url, f } = await rangeFileAfterA({ signal: ac.signal });
    s.behave('m.safetensors', { kind: 'chunks', bytes: 64, everyMs: 20 });
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    const results = await Promise.allSettled([f.readValues('b'), f.readValues('c')]);
    for (const r of results) {
      const e = (r as PromiseRejectedResult).reason as Error;
      expect([r.status, e?.name]).toEqual(['rejected', 'AbortError']);
      expect(e.message).toContain(url);
    }
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(s.hits.filter((h) => h.startsWith('GET')).length).toBe(3);
  }, 10_000);
});

describe('a converted pipeline over HTTP', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(work, 'sd15');
    await convertPipeline(fixture('pipelines/sd15_tiny'), dir);
  }, 60_000);

  test('every request goes through the caller’s fetch, with a signal (was: 5 of 19 bypassed it)', async () => {
    const s = await serve(dir);
    const cf = countingFetch();
    const before = tf.memory().numTensors;
    const pipe = await loadPipeline(s.url, { fetch: cf.fetch });
    pipe.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(s.hits.length).toBeGreaterThan(10);
    expect(cf.calls.length).toBe(s.hits.length);
    expect(cf.calls.every((c) => c.signal)).toBe(true);
  }, 60_000);

  test.each(['model_index.json', 'scheduler/scheduler_config.json', 'tokenizer/vocab.json', 'unet/model.json'])(
    'a silent %s fails within the timeout, naming its URL',
    async (rel) => {
      const s = await serve(dir);
      s.behave(rel, { kind: 'silent' });
      const before = tf.memory().numTensors;
      const { e, ms } = await failure(loadPipeline(s.url, { timeoutMs: 300 }));
      expect(e.message).toContain(`${s.url}${rel}`);
      expect(ms).toBeLessThan(5000);
      expect(tf.memory().numTensors).toBe(before);
    }, 20_000,
  );

  test('aborting during loadPipeline frees what was loaded', async () => {
    const s = await serve(dir);
    s.behave('vae/model.json', { kind: 'silent' });
    const ac = new AbortController();
    const before = tf.memory().numTensors;
    const p = loadPipeline(s.url, { signal: ac.signal, onProgress: (name) => { if (name === 'vae') setTimeout(() => ac.abort(), 50); } });
    const { e } = await failure(p);
    expect(e.name).toBe('AbortError');
    expect(tf.memory().numTensors).toBe(before);
  }, 20_000);
});

describe('size bounds before parsing', () => {
  const big = (bytes: number): Uint8Array => new TextEncoder().encode(`{"a": "${'x'.repeat(bytes)}"}`);

  test('a remote tokenizer_config.json over the limit is refused, naming the URL', async () => {
    const s = await serve(new Map([['tok/tokenizer_config.json', big(17 << 20)]]));
    const { e } = await failure(loadTokenizer(`${s.url}tok`));
    expect(e.message).toContain(`${s.url}tok/tokenizer_config.json`);
    expect(e.message).toMatch(/larger than the 16777216-byte limit/);
  });

  test('a remote model.json config is read with the same bound (readConfig over a URL)', async () => {
    const s = await serve(new Map([['c/model.json', big(65 << 20)]]));
    const { e } = await failure(readConfig(`${s.url}c`));
    expect(e.message).toContain(`${s.url}c/model.json`);
    expect(e.message).toMatch(/larger than the \d+-byte limit/);
  }, 20_000);

  test('a local config.json over the limit is refused before it is read', async () => {
    const d = path.join(work, 'bigcfg');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'config.json'), big(17 << 20));
    const { e } = await failure(loadModel(d));
    expect(e.message).toContain(path.join(d, 'config.json'));
    expect(e.message).toMatch(/larger than the 16777216-byte limit/);
  });

  test('a local config.json nested 1,000,000 deep fails fast, naming the file', async () => {
    const d = path.join(work, 'deepcfg');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'config.json'), `{"_class_name": "AutoencoderKL", "block_out_channels": ${'['.repeat(1e6)}${']'.repeat(1e6)}}`);
    const { e, ms } = await failure(loadModel(d));
    expect(e.message).toContain(path.join(d, 'config.json'));
    expect(e.message).toMatch(/nested deeper than 64 levels/);
    expect(ms).toBeLessThan(2000);
  });

  test('a local vocab.json over the limit is refused', async () => {
    const d = path.join(work, 'bigvocab');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'vocab.json'), big(17 << 20));
    fs.writeFileSync(path.join(d, 'merges.txt'), '#version: 0.2\n');
    const { e } = await failure(loadTokenizer(d));
    expect(e.message).toContain(path.join(d, 'vocab.json'));
    expect(e.message).toMatch(/larger than the 16777216-byte limit/);
  });
});
