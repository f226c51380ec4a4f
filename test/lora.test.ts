/**
 * LoRA (src/lora) against diffusers' reference forwards (ext2/lora/forward.safetensors): the sd15_tiny UNet and
 * CLIP text encoder with the reference adapter at every recorded scale, from both file formats, fused and
 * unfused; unfusing restores every parameter's bytes (resident, streamed on wasm, offloaded); no tensor leaks
 * across load/fuse/unfuse/unload; a LoRA read over HTTP ranges.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { TEST_BACKENDS, fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { CLIPTextModel } from '../src/models/clip-text.js';
import { loadModel } from '../src/models/load.js';
import type { Module } from '../src/nn/module.js';
import { weightInOurLayout } from '../src/nn/streamed-weights.js';
import { transposeValues } from '../src/nn/host-weights.js';
import { setGemmStrategy } from '../src/layers/gemm.js';
import { encodeSafetensors, SafetensorsFile } from '../src/io/safetensors.js';
import { LoraSet, applyLora } from '../src/lora/lora-set.js';
import { startServer } from './support/http-server.js';

const UNET = 'pipelines/sd15_tiny/unet';
const TE = 'pipelines/sd15_tiny/text_encoder';
const PEFT = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');
const KOHYA = fixture('ext2/models/sd15_tiny_lora/kohya_lora.safetensors');
const BOUND: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };

/** The file's tensors re-encoded with other metadata (none by default). */
async function withMetadata(file: string, metadata?: Record<string, string>): Promise<Uint8Array> {
  const f = await SafetensorsFile.fromBytes(readFileSync(file));
  const t: Record<string, { values: Float32Array; shape: number[] }> = {};
  for (const k of f.keys()) { const v = await f.readValues(k); t[k] = { values: v.values as Float32Array, shape: v.shape }; }
  return encodeSafetensors(t, metadata);
}

/** Every parameter's bytes, in our layout, wherever it is held. */
function snapshot(m: Module): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [k, p] of m.namedParameters()) {
    if (p.host) {
      // A streamed host copy is the 2-D transpose of ours (nn/streamed-weights.ts).
      const cols = p.shape[p.shape.length - 1];
      const v = p.host.streamed ? transposeValues(p.host.values!, cols, p.size / cols) : p.host.values!.slice();
      out.set(k, new Uint8Array(v.buffer));
      continue;
    }
    const t = weightInOurLayout(p);
    out.set(k, new Uint8Array((t.dataSync() as Float32Array).slice().buffer));
    t.dispose();
  }
  return out;
}

function expectSameBytes(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  const differing = [...a].filter(([k, v]) => Buffer.compare(Buffer.from(v), Buffer.from(b.get(k)!)) !== 0).map(([k]) => k);
  expect(differing).toEqual([]);
}

describe.each(TEST_BACKENDS)('LoRA forwards equal the reference on %s', (backend) => {
  let unet: UNet2DConditionModel;
  let te: CLIPTextModel;
  let g: Record<string, tf.Tensor>;
  const bound = BOUND[backend] ?? 1e-4;
  beforeAll(async () => {
    await useBackend(backend);
    unet = await UNet2DConditionModel.fromPretrained(fixture(UNET));
    te = await CLIPTextModel.fromPretrained(fixture(TE));
    g = await loadFixture('ext2/lora/forward.safetensors');
  });
  afterAll(() => {
    unet.dispose();
    te.dispose();
    tf.dispose(Object.values(g));
  });

  /** rel-L2 of the UNet output and the text encoder's last hidden state / pooled output against `<name>.<tag>`. */
  function check(tag: string): Record<string, number> {
    const u = unet.forward({ sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'] });
    const o = te.forward({ inputIds: g['in.input_ids'], outputHiddenStates: false });
    const errs = {
      unet: relL2T(u, g[`unet_out.${tag}`]),
      te_last: relL2T(o.lastHiddenState, g[`te_last_hidden_state.${tag}`]),
      te_pooled: relL2T(o.pooledOutput!, g[`te_pooler_output.${tag}`]),
    };
    tf.dispose([u, o.lastHiddenState, o.pooledOutput!]);
    return errs;
  }

  test('without a LoRA the models give the recorded base outputs', () => {
    const e = check('base');
    console.log(`lora base [${backend}] ${JSON.stringify(e)}`);
    for (const v of Object.values(e)) expect(v).toBeLessThanOrEqual(bound);
  });

  const cases = [['peft', PEFT], ['kohya', KOHYA]] as const;
  test.each(cases)('%s file at scales 1.0 and 0.5, fused and unfused', async (format, file) => {
    const before = snapshot(unet);
    const beforeTe = snapshot(te);
    const lora = new LoraSet(() => ({ unet, text_encoder: te }));
    const report: string[] = [];
    for (const scale of [1.0, 0.5]) {
      const info = await lora.load(file, { scale, name: `s${scale}` });
      expect(info).toMatchObject({ format, scale, fused: false, modules: { unet: 48, text_encoder: 12 } });
      for (const mode of ['unfused', 'fused']) {
        if (mode === 'fused') await lora.fuse();
        const e = check(`scale${scale.toFixed(1)}`);
        report.push(`${mode} ${scale}: ${Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
        for (const v of Object.values(e)) expect(v).toBeLessThanOrEqual(bound);
      }
      await lora.unload(`s${scale}`);
    }
    console.log(`lora ${format} [${backend}]\n  ${report.join('\n  ')}`);
    expectSameBytes(before, snapshot(unet));
    expectSameBytes(beforeTe, snapshot(te));
  });

  test('alpha: metadata, lora_adapter_metadata, the caller\'s alpha, or the rank (what diffusers does without one)', async () => {
    const bare = await withMetadata(PEFT);
    const adapterMeta = await withMetadata(PEFT, { format: 'pt', lora_adapter_metadata: JSON.stringify({ 'unet.lora_alpha': 8, 'unet.r': 4, 'text_encoder.lora_alpha': 8 }) });
    const cases: [string, Uint8Array, number | undefined, string][] = [
      ['no alpha anywhere → alpha = rank', bare, undefined, 'alpha_eq_rank_scale1.0'],
      ['alpha option', bare, 8, 'scale1.0'],
      ['lora_adapter_metadata', adapterMeta, undefined, 'scale1.0'],
    ];
    const lora = new LoraSet(() => ({ unet, text_encoder: te }));
    for (const [what, bytes, alpha, tag] of cases) {
      await lora.load(bytes, { alpha });
      await lora.fuse();
      const e = check(tag);
      console.log(`lora alpha [${backend}] ${what}: ${JSON.stringify(e)}`);
      for (const v of Object.values(e)) expect(v).toBeLessThanOrEqual(bound);
      await lora.unload();
    }
  });
});

describe('fuse and unfuse restore every weight bit for bit, without leaks', () => {
  afterAll(() => setGemmStrategy('auto'));

  test.each([['cpu', 'auto'], ['wasm', 'streamed']] as const)('%s (GEMM %s), 3 load/fuse/unfuse/unload cycles', async (backend, gemm) => {
    await useBackend(backend);
    setGemmStrategy(gemm);
    const unet = await UNet2DConditionModel.fromPretrained(fixture(UNET));
    const te = await CLIPTextModel.fromPretrained(fixture(TE));
    const x = tf.randomNormal([1, 4, 8, 8], 0, 1, 'float32', 3);
    const enc = tf.randomNormal([1, 5, 32], 0, 1, 'float32', 4);
    // A first forward converts the large weights to the streamed layout in place when streaming.
    unet.forward({ sample: x, timestep: 10, encoderHiddenStates: enc }).dispose();
    const weights = snapshot(unet);
    const teWeights = snapshot(te);
    const before = tf.memory().numTensors;
    const lora = new LoraSet(() => ({ unet, text_encoder: te }));
    for (let cycle = 0; cycle < 3; cycle++) {
      await lora.load(KOHYA, { scale: 0.7 });
      await lora.load(PEFT, { scale: -0.3, name: 'second' });
      await lora.fuse();
      expect(lora.fusedOriginalBytes).toBeGreaterThan(0);
      unet.forward({ sample: x, timestep: 10, encoderHiddenStates: enc }).dispose();
      await lora.setScale('second', 0.2);
      await lora.unfuse();
      expect(lora.fusedOriginalBytes).toBe(0);
      expectSameBytes(weights, snapshot(unet));
      expectSameBytes(teWeights, snapshot(te));
      await lora.fuse(['second']);
      expect(lora.list().map((a) => [a.name, a.fused])).toEqual([['default_0', false], ['second', true]]);
      await lora.unload('second');
      await lora.unload();
      expect(lora.list()).toEqual([]);
      expect(tf.memory().numTensors).toBe(before);
    }
    expectSameBytes(weights, snapshot(unet));
    expect([...unet.namedModules()].every(([, m]) => !('lowRank' in m) || (m as unknown as { lowRank: unknown[] }).lowRank.length === 0)).toBe(true);
    tf.dispose([x, enc]);
    unet.dispose();
    te.dispose();
  });
});

describe('LoRA on an offloaded UNet', () => {
  afterAll(() => setGemmStrategy('auto'));
  test.each([['cpu', 'auto'], ['wasm', 'streamed']] as const)('%s (GEMM %s): fused weights stream from JS memory; unfuse restores the host copies', async (backend, gemm) => {
    await useBackend(backend);
    setGemmStrategy(gemm);
    const g = await loadFixture('ext2/lora/forward.safetensors');
    const unet = await loadModel<UNet2DConditionModel>(fixture(UNET), { offload: { unitBytes: 20_000 } });
    const run = () => unet.forward({ sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'] });
    // With streaming, a first forward leaves the host copies in the streamed layout.
    run().dispose();
    if (gemm === 'streamed') expect([...unet.namedParameters()].some(([, p]) => p.host?.streamed)).toBe(true);
    const weights = snapshot(unet);
    const before = tf.memory().numTensors;
    const lora = await applyLora(unet, KOHYA, { prefix: 'lora_unet' });
    expect(lora.list()[0].modules).toEqual({ unet: 48 });
    const bound = backend === 'cpu' ? 1e-5 : 1e-4;
    const fused = run();
    const e = relL2T(fused, g['unet_out.scale1.0']);
    console.log(`lora offloaded fused [${backend}, ${gemm}] rel-L2 ${e.toExponential(2)}`);
    expect(e).toBeLessThanOrEqual(bound);
    await lora.unfuse();
    expectSameBytes(weights, snapshot(unet));
    const unfused = run();
    expect(relL2T(unfused, g['unet_out.scale1.0'])).toBeLessThanOrEqual(bound);
    await lora.unload();
    tf.dispose([fused, unfused]);
    expect(tf.memory().numTensors).toBe(before);
    unet.dispose();
    tf.dispose(Object.values(g));
  });
});

describe('a LoRA over HTTP (HttpRangeSource, as in a browser)', () => {
  test('loading by URL gives the same weights as the local file, reading only ranges (one with read-ahead, one per tensor without)', async () => {
    await useBackend('cpu');
    const bytes = readFileSync(KOHYA);
    const ranges: string[] = [];
    const server = http.createServer((req, res) => {
      if (req.method === 'HEAD') { res.writeHead(200, { 'content-length': bytes.length }).end(); return; }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (!m) { res.writeHead(400).end(); return; }
      ranges.push(m[0]);
      const b = bytes.subarray(Number(m[1]), Number(m[2]) + 1);
      res.writeHead(206, { 'content-length': b.length, 'content-range': `bytes ${m[1]}-${m[2]}/${bytes.length}` }).end(b);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kohya_lora.safetensors`;
    const te = await CLIPTextModel.fromPretrained(fixture(TE));
    try {
      const local = await applyLora(te, KOHYA, { prefix: 'text_encoder' });
      const fusedLocal = snapshot(te);
      await local.unload();
      const remote = await applyLora(te, url, { prefix: 'lora_te' });
      expectSameBytes(fusedLocal, snapshot(te));
      expect(remote.list()[0].source).toBe(url);
      // The default read-ahead (8 MiB) takes the whole 94 KB file in one range.
      expect(ranges).toEqual([`bytes=0-${bytes.length - 1}`]);
      await remote.unload();
      ranges.length = 0;
      const exact = await applyLora(te, url, { prefix: 'lora_te', readAheadBytes: 0 });
      expectSameBytes(fusedLocal, snapshot(te));
      // Without read-ahead: the header (2 reads) + down, up and alpha of the 12 text-encoder modules; the UNet's tensors never travel.
      expect(ranges.length).toBe(2 + 36);
      await exact.unload();
    } finally {
      te.dispose();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('a LoRA server that stalls fails within timeoutMs naming the URL, and a signal stops the load; the model is left as it was', async () => {
    await useBackend('cpu');
    const s = await startServer(new Map([['kohya.safetensors', readFileSync(KOHYA)]]), { ranges: true });
    const url = `${s.url}kohya.safetensors`;
    const te = await CLIPTextModel.fromPretrained(fixture(TE));
    try {
      const weights = snapshot(te);
      const tensors = tf.memory().numTensors;
      s.behave('kohya.safetensors', { kind: 'trickle', everyMs: 50 });
      let t0 = Date.now();
      const late = await applyLora(te, url, { prefix: 'lora_te', timeoutMs: 300 }).then(() => null, (e: Error) => e);
      expect(late?.message).toContain(url);
      expect(late?.message).toMatch(/in 300 ms/);
      expect(Date.now() - t0).toBeLessThan(3000);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      t0 = Date.now();
      const stopped = await applyLora(te, url, { prefix: 'lora_te', signal: ac.signal }).then(() => null, (e: Error) => e);
      expect(stopped?.name).toBe('AbortError');
      expect(Date.now() - t0).toBeLessThan(3000);
      expectSameBytes(weights, snapshot(te));
      expect(tf.memory().numTensors).toBe(tensors);
    } finally {
      te.dispose();
      await s.close();
    }
  }, 20_000);
});
