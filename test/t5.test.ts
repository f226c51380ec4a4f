/** T5EncoderModel against transformers (goldens/t5_tiny_forward), tied/sharded checkpoints, buckets, errors, leaks. */
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { T5EncoderModel, relativePositionBucket } from '../src/models/t5-encoder.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { openSafetensors } from '../src/io/node-source.js';
import { TEST_BACKENDS, fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';

const BOUND: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };
const DIR = fixture('pipelines/pixart_tiny/text_encoder');

describe.each(TEST_BACKENDS)('T5 golden on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });

  test('t5_tiny_forward with and without attention_mask', async () => {
    const ref = await loadFixture('goldens/t5_tiny_forward.safetensors');
    const model = await T5EncoderModel.fromPretrained(DIR);
    try {
      expect(model.numParameters()).toBe(17248);
      const inputIds = ref['in.input_ids'];
      const attentionMask = ref['in.attention_mask'];
      const errs: Record<string, number> = {};
      for (const [name, opts] of [
        ['last_hidden_state', { inputIds, attentionMask }],
        ['last_hidden_state_nomask', { inputIds }],
      ] as const) {
        const { lastHiddenState } = model.forward(opts);
        const e = relL2T(lastHiddenState, ref[name]);
        lastHiddenState.dispose();
        errs[name] = e;
        if (!(e <= BOUND[backend])) throw new Error(`t5_tiny_forward on ${backend}: ${name} rel-L2 ${e} > ${BOUND[backend]}`);
      }
      console.log(`t5_tiny_forward ${backend} rel-L2 ${JSON.stringify(errs)}`);

      const before = tf.memory().numTensors;
      for (let i = 0; i < 2; i++) model.forward({ inputIds, attentionMask }).lastHiddenState.dispose();
      expect(tf.memory().numTensors).toBe(before);

      // number[][] inputs give the same result.
      const o = model.forward({ inputIds: inputIds.arraySync() as number[][], attentionMask: attentionMask.arraySync() as number[][] });
      expect(relL2T(o.lastHiddenState, ref.last_hidden_state)).toBeLessThanOrEqual(BOUND[backend]);
      o.lastHiddenState.dispose();
    } finally {
      model.dispose();
      tf.dispose(Object.values(ref));
    }
  });
});

describe('T5 checkpoints', () => {
  let tmp: string;
  let ref: Record<string, tf.Tensor>;
  let weights: Record<string, tf.Tensor>;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 't5-'));
    ref = await loadFixture('goldens/t5_tiny_forward.safetensors');
    const f = await openSafetensors(path.join(DIR, 'model.safetensors'));
    weights = {};
    for (const k of f.keys()) weights[k] = await f.tensor(k);
    await f.close();
  });
  afterAll(async () => {
    tf.dispose([...Object.values(ref), ...Object.values(weights)]);
    await rm(tmp, { recursive: true, force: true });
  });

  async function expectGolden(dir: string): Promise<void> {
    const m = await T5EncoderModel.fromPretrained(dir);
    const { lastHiddenState } = m.forward({ inputIds: ref['in.input_ids'], attentionMask: ref['in.attention_mask'] });
    expect(relL2T(lastHiddenState, ref.last_hidden_state)).toBeLessThanOrEqual(1e-5);
    lastHiddenState.dispose();
    m.dispose();
  }

  test('sharded checkpoint (model.safetensors.index.json)', async () => {
    const dir = path.join(tmp, 'sharded');
    await rm(dir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dir));
    await copyFile(path.join(DIR, 'config.json'), path.join(dir, 'config.json'));
    const keys = Object.keys(weights).sort();
    const shards = [keys.filter((_, i) => i % 2 === 0), keys.filter((_, i) => i % 2 === 1)];
    const weightMap: Record<string, string> = {};
    for (const [i, ks] of shards.entries()) {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(path.join(dir, name), encodeSafetensors(Object.fromEntries(ks.map((k) => [k, weights[k]])), { format: 'pt' }));
      for (const k of ks) weightMap[k] = name;
    }
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    await expectGolden(dir);
  });

  test('tied embedding stored as encoder.embed_tokens.weight only, or under both names', async () => {
    for (const variant of ['only_embed_tokens', 'both']) {
      const dir = path.join(tmp, variant);
      await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
      await copyFile(path.join(DIR, 'config.json'), path.join(dir, 'config.json'));
      const w: Record<string, tf.Tensor> = { ...weights, 'encoder.embed_tokens.weight': weights['shared.weight'] };
      if (variant === 'only_embed_tokens') delete w['shared.weight'];
      await writeFile(path.join(dir, 'model.safetensors'), encodeSafetensors(w));
      await expectGolden(dir);
    }
  });

  test('missing weights are named', async () => {
    const dir = path.join(tmp, 'missing');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    await copyFile(path.join(DIR, 'config.json'), path.join(dir, 'config.json'));
    const w = { ...weights };
    delete w['encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'];
    await writeFile(path.join(dir, 'model.safetensors'), encodeSafetensors(w));
    await expect(T5EncoderModel.fromPretrained(dir)).rejects.toThrow(/missing key: encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight/);
  });
});

describe('T5 relative position buckets', () => {
  test('bidirectional, 32 buckets, max distance 128 (values as transformers computes them)', () => {
    const b = (rp: number): number => relativePositionBucket(rp, true, 32, 128);
    expect([0, -1, -7, 1, 7].map(b)).toEqual([0, 1, 7, 17, 23]);
    // Far: 8 + trunc(log(rp/8) / log(16) · 8), capped at 15; positive keys offset by 16.
    expect([-8, -11, -15, -16, -20, -31, -32, -64, -127, -128, -1000].map(b)).toEqual([8, 8, 9, 10, 10, 11, 12, 14, 15, 15, 15]);
    expect([8, 16, 32, 64, 200].map(b)).toEqual([24, 26, 28, 30, 31]);
  });
});

describe('T5 config and input errors', () => {
  const base = { d_model: 8, d_kv: 4, d_ff: 10, num_layers: 1, num_heads: 2, vocab_size: 20, feed_forward_proj: 'gated-gelu' };
  test('unsupported config values name the key', () => {
    expect(() => T5EncoderModel.fromConfig({ ...base, feed_forward_proj: 'gated-swoosh' })).toThrow(/feed_forward_proj="gated-swoosh"/);
    expect(() => T5EncoderModel.fromConfig({ ...base, feed_forward_proj: 'gelu-gated' })).toThrow(/feed_forward_proj="gelu-gated"/);
    expect(() => T5EncoderModel.fromConfig({ ...base, num_heads: 0 })).toThrow(/num_heads=0/);
    expect(() => T5EncoderModel.fromConfig({ ...base, is_decoder: true })).toThrow(/is_decoder/);
  });

  test('relu variant has wi/wo keys; gated-gelu has wi_0/wi_1/wo', () => {
    const relu = [...T5EncoderModel.fromConfig({ ...base, feed_forward_proj: 'relu' }).namedParameters()].map(([k]) => k);
    expect(relu).toContain('encoder.block.0.layer.1.DenseReluDense.wi.weight');
    expect(relu).not.toContain('encoder.block.0.layer.1.DenseReluDense.wi_0.weight');
    const gated = [...T5EncoderModel.fromConfig(base).namedParameters()].map(([k]) => k);
    expect(gated).toEqual(expect.arrayContaining(['shared.weight', 'encoder.block.0.layer.1.DenseReluDense.wi_0.weight',
      'encoder.block.0.layer.1.DenseReluDense.wi_1.weight', 'encoder.final_layer_norm.weight']));
    expect(gated).not.toContain('encoder.embed_tokens.weight');
  });

  test('bad inputs are rejected; a fully masked row stays finite (uniform attention, as torch)', () => {
    const m = T5EncoderModel.fromConfig(base);
    m.initRandom(2, 0.3);
    const before = tf.memory().numTensors;
    expect(() => m.forward({ inputIds: [[1, 20]] })).toThrow(/token id 20 is outside the vocabulary/);
    expect(() => m.forward({ inputIds: [[1, 2]], attentionMask: [[1]] })).toThrow(/attention_mask shape/);
    expect(() => m.forward({ inputIds: [[1, 2]], attentionMask: [[1, 2]] })).toThrow(/only 0 and 1/);
    expect(tf.memory().numTensors).toBe(before);
    const { lastHiddenState } = m.forward({ inputIds: [[1, 2, 3]], attentionMask: [[0, 0, 0]] });
    expect(Array.from(lastHiddenState.dataSync()).every(Number.isFinite)).toBe(true);
    lastHiddenState.dispose();
    m.dispose();
  });
});
