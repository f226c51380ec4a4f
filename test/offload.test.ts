/**
 * Weight offload (src/nn/offload.ts) on the tiny golden models: same outputs as resident weights, weights
 * built in JS memory without backend tensors, and the backend holding only the resident weights between
 * forwards, after errors included.
 */
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { fixture, loadFixture, relL2, TEST_BACKENDS, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { loadModel } from '../src/models/load.js';
import { offloadHandle, offloadWeights, type OffloadHandle } from '../src/nn/offload.js';
import { openWeights, readConfig } from '../src/io/component-source.js';
import { modelFromConfig } from '../src/models/registry.js';
import { setGemmStrategy } from '../src/layers/gemm.js';
import { convertComponent } from '../src/convert/convert.js';
import type { Module, Parameter, WeightSource } from '../src/nn/module.js';
import type { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import type { PixArtTransformer2DModel } from '../src/models/pixart-transformer.js';
import type { PixArtAlphaPipeline } from '../src/pipelines/pixart-alpha.js';

const UNET = 'pipelines/sd15_tiny/unet';
const PIXART = 'models/pixart_tiny_noac';
const params = (m: Module): [string, Parameter][] => [...m.namedParameters()];
const handle = (m: Module): OffloadHandle => offloadHandle(m)!;

/** Forward output values, with the output disposed. */
function run(f: () => tf.Tensor): Float32Array {
  const y = f();
  const v = y.dataSync() as Float32Array;
  y.dispose();
  return v;
}

/** Every unit fits the limit, its parent does not (units are maximal), and every weight is counted once. */
function checkPlan(m: Module, h: OffloadHandle, limit: number): void {
  const modules = new Map(m.namedModules());
  let unitBytes = 0;
  for (const u of h.units) {
    const bytes = modules.get(u)!.numParameters() * 4;
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(limit);
    const parent = u.includes('.') ? modules.get(u.slice(0, u.lastIndexOf('.')))! : m;
    if (parent !== m && typeof (parent as { forward?: unknown }).forward === 'function') expect(parent.numParameters() * 4).toBeGreaterThan(limit);
    unitBytes += bytes;
  }
  expect(h.hostBytes).toBe(unitBytes);
  expect(h.hostBytes + h.residentBytes).toBe(m.numParameters() * 4);
  const host = params(m).filter(([, p]) => p.host).reduce((s, [, p]) => s + p.size * 4, 0);
  expect(host).toBe(h.hostBytes);
}

/** A real weight source with keys dropped, added or reshaped. */
function altered(src: WeightSource, o: { drop?: string; add?: string; reshape?: string }): WeightSource {
  return {
    name: src.name,
    layoutConverted: src.layoutConverted,
    keys: () => [...src.keys().filter((k) => k !== o.drop), ...(o.add ? [o.add] : [])],
    shape: (k) => (k === o.reshape ? [...src.shape(k), 1] : k === o.add ? [3] : src.shape(k)),
    read: (k) => src.read(k),
  };
}

describe.each(TEST_BACKENDS)('offload on %s', (backend) => {
  let sample: tf.Tensor;
  let text: tf.Tensor;
  let resident: UNet2DConditionModel;
  let expected: Float32Array;
  beforeAll(async () => {
    await useBackend(backend);
    // The golden inputs, cut to one 16×16 sample to keep cpu runs short.
    const g = await loadFixture('goldens/sd15_tiny_unet_forward.safetensors');
    sample = g['in.sample'].slice([0, 0, 0, 0], [1, -1, 16, 16]);
    text = g['in.encoder_hidden_states'].slice([0, 0, 0], [1, -1, -1]);
    tf.dispose(Object.values(g));
    resident = await loadModel<UNet2DConditionModel>(fixture(UNET));
    expected = run(() => resident.forward(inputs()));
  });
  afterAll(async () => {
    resident.dispose();
    tf.dispose([sample, text]);
    await useBackend('cpu');
  });
  const inputs = () => ({ sample, timestep: 500, encoderHiddenStates: text });

  test('default units: every top-level block of the UNet, nothing resident, no backend tensor while loading', async () => {
    const before = tf.memory();
    const m = await loadModel<UNet2DConditionModel>(fixture(UNET), { offload: true });
    const h = handle(m);
    expect(h.units).toEqual(['conv_in', 'time_embedding', 'down_blocks.0', 'down_blocks.1', 'mid_block', 'up_blocks.0', 'up_blocks.1', 'conv_norm_out', 'conv_out']);
    expect(h.hostBytes).toBe(m.numParameters() * 4);
    expect(h.residentBytes).toBe(0);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(relL2(run(() => m.forward(inputs())), expected)).toBe(0);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(h.stats.uploadBytes).toBe(h.hostBytes);
    m.dispose();
    expect(params(m).every(([, p]) => !p.loaded)).toBe(true);
  });

  test('small units: same forward, resident weights only between forwards, stable tensor count', async () => {
    const limit = 100_000;
    const before = tf.memory();
    const m = await loadModel<UNet2DConditionModel>(fixture(UNET), { offload: { unitBytes: limit } });
    const h = handle(m);
    checkPlan(m, h, limit);
    expect(h.units.length).toBe(64);
    expect(h.residentBytes).toBeGreaterThan(0);
    const residentParams = params(m).filter(([, p]) => !p.host).length;
    const between = (): void => {
      expect(tf.memory().numTensors - before.numTensors).toBe(residentParams);
      expect(tf.memory().numBytes - before.numBytes).toBe(h.residentBytes);
      expect(params(m).every(([, p]) => !p.host || p.value === null)).toBe(true);
    };
    between();
    for (let r = 0; r < 2; r++) {
      const y = run(() => m.forward(inputs()));
      expect(relL2(y, expected)).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-6);
      between();
    }
    m.dispose();
    expect(tf.memory().numTensors).toBe(before.numTensors);
  });

  test('PixArt: a root parameter stays resident and the forward is unchanged', async () => {
    const p = await loadFixture(`goldens/pixart_tiny_noac_forward.safetensors`);
    const o = {
      hiddenStates: p['in.hidden_states'], timestep: p['in.timestep'], encoderHiddenStates: p['in.encoder_hidden_states'],
      encoderAttentionMask: p['in.encoder_attention_mask'],
    };
    const a = await loadModel<PixArtTransformer2DModel>(fixture(PIXART));
    const want = run(() => a.forward(o));
    const before = tf.memory();
    const b = await loadModel<PixArtTransformer2DModel>(fixture(PIXART), { offload: { unitBytes: 20_000 } });
    const h = handle(b);
    checkPlan(b, h, 20_000);
    expect(h.units).toContain('transformer_blocks.0.attn1');
    expect(b.scale_shift_table.host).toBeNull();
    expect(tf.memory().numBytes - before.numBytes).toBe(h.residentBytes);
    expect(relL2(run(() => b.forward(o)), want)).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-6);
    expect(tf.memory().numBytes - before.numBytes).toBe(h.residentBytes);
    a.dispose();
    b.dispose();
    tf.dispose(Object.values(p));
  });

  test('an error inside a unit releases the weights it uploaded', async () => {
    const m = await loadModel<UNet2DConditionModel>(fixture(UNET), { offload: true });
    const h = handle(m);
    const before = tf.memory().numTensors;
    const bad = tf.zeros([1, 8, 8, 5]); // conv_in expects 4 input channels
    expect(() => m.conv_in.forward(bad as tf.Tensor4D)).toThrow();
    expect(h.stats.uploadBytes).toBeGreaterThan(0);
    expect(h.stats.uploadBytes).toBeLessThanOrEqual(m.conv_in.numParameters() * 4);
    expect(m.conv_in.weight.value).toBeNull();
    expect(tf.memory().numTensors).toBe(before + 1);
    // Deeper: the first down block's resnets run, then its cross-attention gets text states of the wrong width.
    const blk = m.down_blocks.at(0);
    const x = tf.zeros([1, 8, 8, 32]);
    const temb = tf.zeros([1, blk.resnets.at(0).time_emb_proj!.inFeatures]);
    const enc = tf.zeros([1, 77, 48]);
    const uploaded = h.stats.uploadBytes;
    expect(() => blk.forward(x as tf.Tensor4D, { temb, enc, encBias: null, ctx: {} })).toThrow();
    expect(h.stats.uploadBytes).toBeGreaterThan(uploaded);
    expect(tf.memory().numTensors).toBe(before + 4);
    // And a failure in the model's own code, between units.
    expect(() => m.forward({ ...inputs(), record: (name) => { if (name === 'mid_block') throw new Error('stop'); } })).toThrow('stop');
    expect(tf.memory().numTensors).toBe(before + 4);
    expect(params(m).every(([, p]) => p.value === null)).toBe(true);
    expect(relL2(run(() => m.forward(inputs())), expected)).toBe(0);
    tf.dispose([bad, x, temb, enc]);
    m.dispose();
  });

  test('restore() puts every weight back in the backend, exactly as loaded, and unwraps the forwards', async () => {
    const before = tf.memory();
    const m = await loadModel<UNet2DConditionModel>(fixture(UNET), { offload: { unitBytes: 50_000 } });
    const h = handle(m);
    h.restore();
    expect(offloadHandle(m)).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(m.conv_in, 'forward')).toBe(false);
    expect(tf.memory().numBytes - before.numBytes).toBe(m.numParameters() * 4);
    // Host-side layout conversion (linear and conv transposes in JS) equals the backend one (of a model that
    // has not run: on wasm a Linear/Conv2d weight changes layout on first use).
    const fresh = await loadModel<UNet2DConditionModel>(fixture(UNET));
    const want = new Map(fresh.namedParameters());
    for (const [k, p] of params(m)) {
      expect(p.host).toBeNull();
      expect(p.t.shape).toEqual(want.get(k)!.t.shape);
      expect(relL2(p.t.dataSync(), want.get(k)!.t.dataSync())).toBe(0);
    }
    fresh.dispose();
    expect(relL2(run(() => m.forward(inputs())), expected)).toBe(0);
    // A loaded model that has run can be offloaded afterwards too.
    const h2 = offloadWeights(m);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    expect(relL2(run(() => m.forward(inputs())), expected)).toBe(0);
    expect(() => offloadWeights(m)).toThrow(/already offloaded/);
    h2.restore();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before.numTensors);
  });

  test('streamed GEMM: JS memory keeps the converted weights; later forwards, reloads and restore() agree', async () => {
    setGemmStrategy('streamed');
    try {
      const before = tf.memory().numTensors;
      const m = await loadModel<UNet2DConditionModel>(fixture(UNET), { offload: true });
      const gemm = params(m).filter(([, p]) => p.layout !== 'plain');
      const first = run(() => m.forward(inputs()));
      // Same math as the packed GEMM up to summation order.
      expect(relL2(first, expected)).toBeLessThanOrEqual(1e-5);
      expect(gemm.every(([, p]) => p.host!.streamed)).toBe(true);
      expect(params(m).filter(([, p]) => p.layout === 'plain').some(([, p]) => p.host!.streamed)).toBe(false);
      expect(relL2(run(() => m.forward(inputs())), first)).toBe(0);
      // Loading assigns values in our layout again.
      const src = await openWeights(fixture(UNET));
      await m.loadStateDict(src);
      await src.close();
      expect(gemm.some(([, p]) => p.host!.streamed)).toBe(false);
      expect(relL2(run(() => m.forward(inputs())), first)).toBe(0);
      handle(m).restore();
      expect(relL2(run(() => m.forward(inputs())), first)).toBe(0);
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      setGemmStrategy('auto');
    }
  });

  test('a converted (TF.js layout) folder loads into JS memory too', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'tgate-offload-'));
    const out = path.join(tmp, 'unet');
    try {
      await convertComponent(fixture(UNET), out);
      const before = tf.memory().numTensors;
      const m = await loadModel<UNet2DConditionModel>(out, { offload: true });
      expect(tf.memory().numTensors).toBe(before);
      expect(relL2(run(() => m.forward(inputs())), expected)).toBe(0);
      m.dispose();
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('loading and random init into JS memory', () => {
  beforeAll(async () => { await useBackend('cpu'); });
  const build = async (dir = UNET, unitBytes = 100_000): Promise<Module> => {
    const m = modelFromConfig(await readConfig(fixture(dir)));
    offloadWeights(m, { unitBytes });
    return m;
  };

  test.each([
    ['missing', { drop: 'conv_in.weight' }, /missing key: conv_in\.weight/],
    ['extra', { add: 'not_a_module.weight' }, /unexpected key: not_a_module\.weight/],
    ['misshaped', { reshape: 'down_blocks.0.resnets.0.conv1.weight' }, /shape mismatch: down_blocks\.0\.resnets\.0\.conv1\.weight expected \[32,32,3,3\]/],
  ] as const)('%s keys are named before anything is allocated', async (_name, change, msg) => {
    const m = await build();
    const src = await openWeights(fixture(UNET));
    const before = tf.memory().numTensors;
    try {
      await expect(m.loadStateDict(altered(src, change))).rejects.toThrow(msg);
    } finally {
      await src.close();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(params(m).every(([, p]) => !p.loaded)).toBe(true);
  });

  test('seeded random init is deterministic, N(0, std²), and creates no backend tensor for offloaded weights', async () => {
    const a = await build(PIXART, 20_000);
    const b = await build(PIXART, 20_000);
    const c = await build(PIXART, 20_000);
    const before = tf.memory().numTensors;
    a.initRandom(7, 0.05);
    b.initRandom(7, 0.05);
    c.initRandom(8, 0.05);
    const resident = params(a).filter(([, p]) => !p.host).length;
    expect(tf.memory().numTensors - before).toBe(3 * resident);
    const pb = new Map(params(b));
    const pc = new Map(params(c));
    let n = 0;
    let sq = 0;
    for (const [k, p] of params(a)) {
      if (!p.host) continue;
      expect(p.host.values).toEqual(pb.get(k)!.host!.values);
      expect(p.host.values).not.toEqual(pc.get(k)!.host!.values);
      for (const v of p.host.values!) { n++; sq += v * v; }
    }
    expect(Math.sqrt(sq / n)).toBeCloseTo(0.05, 3);
    [a, b, c].forEach((m) => m.dispose());
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.each(TEST_BACKENDS)('pipeline generation with offload on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });
  afterAll(async () => { await useBackend('cpu'); });

  test('PixArt (T5, transformer, VAE all offloaded) generates the same image as without', async () => {
    const opts = { prompt: 'a red circle', numInferenceSteps: 3, height: 128, width: 128, seed: 3, tgate: { gateStep: 2, warmUp: 0 } };
    const plain = (await loadPipeline(fixture('pipelines/pixart_tiny'))) as PixArtAlphaPipeline;
    const want = await plain.generate(opts);
    const wantLatents = want.latents.dataSync().slice();
    want.latents.dispose();
    plain.dispose();
    const before = tf.memory().numTensors;
    const pipe = (await loadPipeline(fixture('pipelines/pixart_tiny'), { offload: { unitBytes: 20_000 } })) as PixArtAlphaPipeline;
    expect(handle(pipe.textEncoder!).units.length).toBeGreaterThan(1);
    expect(handle(pipe.vae).units.length).toBeGreaterThan(1);
    const got = await pipe.generate(opts);
    expect(relL2(got.latents.dataSync(), wantLatents)).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-6);
    expect(got.images[0].data).toEqual(want.images[0].data);
    got.latents.dispose();
    pipe.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
