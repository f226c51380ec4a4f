import * as tf from '@tensorflow/tfjs-core';
import fs from 'node:fs';
import { fixture, loadFixture, relL2, TEST_BACKENDS, useBackend } from './support/helpers.js';
import { UNet2DConditionModel, type UNetForwardOptions } from '../src/models/unet-2d-condition.js';
import { modelFromConfig } from '../src/models/registry.js';

const readJson = (rel: string): Record<string, unknown> => JSON.parse(fs.readFileSync(fixture(rel), 'utf8'));
const TOL: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };

describe('full-size configs build without weights, with diffusers parameter counts', () => {
  const counts = readJson('configs/param_counts.json') as Record<string, number>;
  test.each([['sd15_unet', 32], ['sd21_unet', 32], ['sdxl_unet', 140]])('%s', (name, procs) => {
    const before = tf.memory().numTensors;
    const m = UNet2DConditionModel.fromConfig(readJson(`configs/${name}.json`));
    expect(m.numParameters()).toBe(counts[name as string]);
    expect(m.attnProcessors().size).toBe(procs);
    expect(tf.memory().numTensors).toBe(before);
  });
  test('the registry builds a UNet by _class_name and names the supported classes otherwise', () => {
    expect(modelFromConfig(readJson('configs/sd15_unet.json'))).toBeInstanceOf(UNet2DConditionModel);
    expect(() => modelFromConfig({ _class_name: 'NoSuchModel' })).toThrow(/unknown _class_name "NoSuchModel" \(supported: .*UNet2DConditionModel/);
  });
});

describe('config validation', () => {
  const base = readJson('pipelines/sd15_tiny/unet/config.json');
  test.each([
    ['class_embed_type', 'timestep'],
    ['attention_type', 'gated'],
    ['addition_embed_type', 'text'],
    ['mid_block_type', 'UNetMidBlock2DSimpleCrossAttn'],
    ['dual_cross_attention', true],
    ['encoder_hid_dim', 768],
    ['time_embedding_type', 'fourier'],
    ['norm_num_groups', null],
  ])('%s=%p is rejected naming key and value', (key, value) => {
    expect(() => UNet2DConditionModel.fromConfig({ ...base, [key]: value })).toThrow(new RegExp(`${key}=${JSON.stringify(value)}`.replace(/[[\]]/g, '\\$&')));
  });
  test('an unsupported block type is rejected', () => {
    expect(() => UNet2DConditionModel.fromConfig({ ...base, down_block_types: ['SimpleCrossAttnDownBlock2D', 'DownBlock2D'] }))
      .toThrow(/down_block_types="SimpleCrossAttnDownBlock2D"/);
  });
});

interface Case { golden: string; dir: string; variant?: string; sdxl?: boolean }
const CASES: Case[] = [
  { golden: 'sd15_tiny_unet_forward', dir: 'pipelines/sd15_tiny/unet' },
  { golden: 'sd21_tiny_unet_forward', dir: 'models/sd21_tiny_unet' },
  { golden: 'sdxl_tiny_unet_forward', dir: 'pipelines/sdxl_tiny/unet', sdxl: true },
  { golden: 'sd15_tiny_unet_fp16weights_forward', dir: 'models/sd15_tiny_unet_fp16', variant: 'fp16' },
];

function inputs(g: Record<string, tf.Tensor>, timestep: number | tf.Tensor): UNetForwardOptions {
  return {
    sample: g['in.sample'], timestep, encoderHiddenStates: g['in.encoder_hidden_states'],
    textEmbeds: g['in.text_embeds'], timeIds: g['in.time_ids'],
  };
}

/**
 * Every golden output is checked on cpu as on wasm (with src/backends/cpu-fast a tiny-UNet forward takes
 * ~5 s on cpu under jest). TGATE_UNET_CPU_FULL=0 limits cpu to the SDXL golden's t=500 call for quick runs.
 */
const CPU_FULL = process.env.TGATE_UNET_CPU_FULL !== '0';

describe.each(TEST_BACKENDS)('goldens on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });
  afterAll(async () => { await useBackend('cpu'); });

  const full = backend !== 'cpu' || CPU_FULL;
  test.each(full ? CASES : CASES.filter((c) => c.sdxl))('$golden', async ({ golden, dir, variant }) => {
    const tol = TOL[backend] ?? 1e-4;
    const model = await UNet2DConditionModel.fromPretrained(fixture(dir), { variant });
    const g = await loadFixture(`goldens/${golden}.safetensors`);
    const errors: string[] = [];
    try {
      // Intermediates first, in the order the forward produced them, so a failure names the first divergence.
      const seen: [string, Float32Array][] = [];
      const out500 = model.forward({ ...inputs(g, 500), record: (name, t) => { if (`inter.${name}` in g) seen.push([name, t.dataSync() as Float32Array]); } });
      const interKeys = Object.keys(g).filter((k) => k.startsWith('inter.'));
      expect(seen.map(([n]) => `inter.${n}`).sort()).toEqual(interKeys.sort());
      for (const [name, vals] of seen) {
        const e = relL2(vals, g[`inter.${name}`].dataSync());
        errors.push(`inter.${name} ${e.toExponential(2)}`);
        if (!(e <= tol)) throw new Error(`${golden} on ${backend}: first diverging intermediate is ${name} (rel-L2 ${e.toExponential(3)} > ${tol})`);
      }
      const outs: [string, () => tf.Tensor][] = [['out_t500', () => out500]];
      if (full) {
        for (const t of [999, 1]) outs.push([`out_t${t}`, () => model.forward(inputs(g, t))]);
        outs.push(['out_tvec', () => model.forward(inputs(g, g['in.tvec']))]);
      }
      for (const [name, run] of outs) {
        const out = run();
        expect(out.shape).toEqual(g[name].shape);
        const e = relL2(out.dataSync(), g[name].dataSync());
        errors.push(`${name} ${e.toExponential(2)}`);
        out.dispose();
        if (!(e <= tol)) throw new Error(`${golden} on ${backend}: ${name} rel-L2 ${e.toExponential(3)} > ${tol} (intermediates all within bound)`);
      }
      console.log(`${golden} [${backend}] ${errors.join(', ')}`);
    } finally {
      model.dispose();
      tf.dispose(Object.values(g));
    }
  });

  test('no tensor leaks across repeated forwards (with and without record)', async () => {
    const model = await UNet2DConditionModel.fromPretrained(fixture('pipelines/sd15_tiny/unet'));
    const x = tf.randomNormal([2, 4, 8, 8], 0, 1, 'float32', 1);
    const enc = tf.randomNormal([2, 7, 32], 0, 1, 'float32', 2);
    const t = tf.tensor1d([3, 700], 'int32');
    try {
      model.forward({ sample: x, timestep: 500, encoderHiddenStates: enc }).dispose();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 2; i++) model.forward({ sample: x, timestep: t, encoderHiddenStates: enc, record: () => {} }).dispose();
      model.forward({ sample: x, timestep: 500, encoderHiddenStates: enc }).dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect([...model.attnProcessors().values()].every((p) => p.constructor.name === 'AttnProcessorDefault')).toBe(true);
    } finally {
      tf.dispose([x, enc, t]);
      model.dispose();
    }
  });
});

// Behaviour checks run on the fastest test backend (see the cpu note above); they do not depend on it.
const FAST = TEST_BACKENDS.includes('wasm') ? 'wasm' : TEST_BACKENDS[0];

describe(`forward behaviour (${FAST})`, () => {
  let model: UNet2DConditionModel;
  let g: Record<string, tf.Tensor>;
  beforeAll(async () => {
    await useBackend(FAST);
    model = await UNet2DConditionModel.fromPretrained(fixture('pipelines/sd15_tiny/unet'));
    g = await loadFixture('goldens/sd15_tiny_unet_forward.safetensors');
  });
  afterAll(async () => {
    model.dispose();
    tf.dispose(Object.values(g));
    await useBackend('cpu');
  });

  test('batch rows are independent; a 0-d timestep broadcasts; an all-ones mask changes nothing', () => {
    const full = model.forward(inputs(g, 500));
    const one = model.forward({
      sample: g['in.sample'].slice(1, 1), timestep: tf.scalar(500), encoderHiddenStates: g['in.encoder_hidden_states'].slice(1, 1),
    });
    expect(relL2(one.dataSync(), full.slice(1, 1).dataSync())).toBeLessThan(1e-5);
    const masked = model.forward({ ...inputs(g, 500), encoderAttentionMask: tf.ones([2, 77]) });
    expect(relL2(masked.dataSync(), full.dataSync())).toBeLessThan(1e-6);
    tf.dispose([full, one, masked]);
  });

  test('non-square inputs run; a size the downsamplings do not divide is an error', () => {
    const x = tf.randomNormal([1, 4, 16, 24], 0, 1, 'float32', 3);
    const enc = g['in.encoder_hidden_states'].slice(0, 1);
    const y = model.forward({ sample: x, timestep: 10, encoderHiddenStates: enc });
    expect(y.shape).toEqual([1, 4, 16, 24]);
    const odd = tf.zeros([1, 4, 16, 15]);
    expect(() => model.forward({ sample: odd, timestep: 10, encoderHiddenStates: enc })).toThrow(/multiples of 2.*16×15/);
    tf.dispose([x, y, odd, enc]);
  });

  test('misshaped inputs are errors that say what was expected', () => {
    const enc = g['in.encoder_hidden_states'];
    const s3 = tf.zeros([2, 3, 32, 32]);
    expect(() => model.forward({ sample: s3, timestep: 1, encoderHiddenStates: enc })).toThrow(/sample must be NCHW \[B, 4, H, W\], got \[2,3,32,32\]/);
    const e64 = tf.zeros([2, 77, 64]);
    expect(() => model.forward({ sample: g['in.sample'], timestep: 1, encoderHiddenStates: e64 })).toThrow(/encoderHiddenStates must be \[2, L, 32\]/);
    const t3 = tf.tensor1d([1, 2, 3]);
    expect(() => model.forward({ sample: g['in.sample'], timestep: t3, encoderHiddenStates: enc })).toThrow(/3 values but the batch is 2/);
    tf.dispose([s3, e64, t3]);
  });
});

test('SDXL (text_time) requires textEmbeds and timeIds of matching size', async () => {
  const m = UNet2DConditionModel.fromConfig(readJson('pipelines/sdxl_tiny/unet/config.json'));
  const s = tf.zeros([1, 4, 16, 16]);
  const e = tf.zeros([1, 77, 64]);
  const te = tf.zeros([1, 32]);
  const ti = tf.zeros([1, 5]);
  expect(() => m.forward({ sample: s, timestep: 1, encoderHiddenStates: e })).toThrow(/textEmbeds and timeIds are required/);
  expect(() => m.forward({ sample: s, timestep: 1, encoderHiddenStates: e, textEmbeds: te, timeIds: ti })).toThrow(/T \+ N·8 = 80/);
  tf.dispose([s, e, te, ti]);
});
