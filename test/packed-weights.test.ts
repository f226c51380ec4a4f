/**
 * Compact weight storage (src/nn/packed-weight.ts) where it does not need WebGPU: tables larger than a piece
 * held in row pieces and gathered piece by piece (resident and offloaded; on cpu and on wasm, whose ClipByValue
 * mistreats int32 ids), the float16 weight dtype refused off WebGPU naming the option, and the rules of setting
 * it (before loading, not with offload). The WebGPU side is test/webgpu-half.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, useBackend } from './support/helpers.js';
import { loadModel } from '../src/models/load.js';
import { Embedding } from '../src/layers/embeddings.js';
import { Linear } from '../src/layers/linear.js';
import { CLIPTextModel } from '../src/models/clip-text.js';
import { offloadWeights } from '../src/nn/offload.js';
import { setPieceBytes } from '../src/nn/packed-weight.js';
import { modelFromConfig } from '../src/models/registry.js';
import { randomNormalHost } from '../src/nn/host-weights.js';
import { relL2 } from '../src/eval/rel-l2.js';

beforeAll(async () => { await useBackend('cpu'); });
afterEach(() => setPieceBytes(null));

const IDS = tf.tensor2d([[0, 49, 17, 3, 33, 34, 16], [48, 1, 2, 31, 32, 0, 49]], [2, 7], 'int32');
afterAll(() => IDS.dispose());

describe.each(['cpu', 'wasm'] as const)('row pieces on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });
  afterAll(async () => { await useBackend('cpu'); });

  test('a table over the piece size is held in row pieces and gathers the same rows', () => {
    const values = randomNormalHost(50 * 24, 1, 3);
    const whole = new Embedding(50, 24);
    whole.weight.assign(values);
    setPieceBytes(1536); // 16 rows of 24 float32 values
    const split = new Embedding(50, 24);
    split.weight.assign(values);
    expect(split.weight.isPacked).toBe(true);
    expect(split.weight.stored.pieces.map((p) => p.shape)).toEqual([[16, 24], [16, 24], [16, 24], [2, 24]]);
    expect(() => split.weight.t).toThrow(/row pieces.*read only by the layer that owns it/);
    const before = tf.memory().numTensors;
    const [a, b] = [whole.forward(IDS), split.forward(IDS)];
    expect(b.shape).toEqual([2, 7, 24]);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
    whole.dispose();
    split.dispose();
  });

  test('CLIP with its tables in pieces gives the unsplit outputs, resident and offloaded', async () => {
    const dir = fixture('pipelines/sd15_tiny/text_encoder');
    const whole = await loadModel<CLIPTextModel>(dir);
    setPieceBytes(4096); // the 529 × 32 token table in 17 pieces of 32 rows, the 77-row position table in 3
    const split = await loadModel<CLIPTextModel>(dir);
    const offloaded = await loadModel<CLIPTextModel>(dir, { offload: { unitBytes: 80000 } });
    const tokens = (m: CLIPTextModel) => m.text_model.embeddings.token_embedding.weight;
    expect(tokens(split).stored.pieces).toHaveLength(17);
    expect(tokens(offloaded).host?.values).toBeInstanceOf(Float32Array);
    const ids = [[209, 5, 17, 300, 528, 2, 1]];
    const before = tf.memory().numTensors;
    const [a, b, c] = [whole, split, offloaded].map((m) => m.forward({ inputIds: ids }));
    expect(relL2(b!.lastHiddenState.dataSync(), a!.lastHiddenState.dataSync())).toBe(0);
    expect(relL2(c!.lastHiddenState.dataSync(), a!.lastHiddenState.dataSync())).toBe(0);
    for (const o of [a!, b!, c!]) tf.dispose([o.lastHiddenState, ...o.hiddenStates, o.pooledOutput!]);
    expect(tf.memory().numTensors).toBe(before);
    // The offloaded pieces existed only during the forward.
    expect(tokens(offloaded).packed).toBeNull();
    [whole, split, offloaded].forEach((m) => m.dispose());
  });
});

test("weightDtype 'float16' is refused off WebGPU, naming the option and the backend", async () => {
  await expect(loadModel(fixture('pipelines/sd15_tiny/unet'), { weightDtype: 'float16' }))
    .rejects.toThrow(/weightDtype 'float16' \(--weight-dtype float16\).*active backend is cpu/);
  // Held as halves anyway (set by hand), the layer refuses the same way at its first forward.
  const lin = new Linear(8, 4);
  lin.setWeightDtype('float16');
  lin.initRandom(1);
  expect(() => lin.weight.t).toThrow(/packed float16/);
  expect(() => lin.forward(tf.ones([2, 8]))).toThrow(/weightDtype 'float16'.*active backend is cpu/);
  lin.dispose();
});

test('the weight dtype is set before loading, and float16 is not combined with offload', () => {
  const loaded = new Linear(8, 4);
  loaded.initRandom(1);
  expect(() => loaded.setWeightDtype('float16')).toThrow(/before weights are loaded \(weight already is\)/);
  expect(() => loaded.setWeightDtype('bfloat16' as never)).toThrow(/'float32' or 'float16', got "bfloat16"/);
  loaded.dispose();
  const config = { _class_name: 'CLIPTextModel', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 20, eos_token_id: 2 };
  const off = modelFromConfig(config);
  offloadWeights(off);
  expect(() => off.setWeightDtype('float16')).toThrow(/float16 weights cannot be offloaded/);
  const half = modelFromConfig(config) as CLIPTextModel;
  half.setWeightDtype('float16');
  expect(() => offloadWeights(half)).toThrow(/float16 weights cannot be offloaded/);
  // Linear, Conv2d and Embedding weights only: biases and norms stay float32.
  const dtypes = new Map([...half.namedParameters()].map(([k, p]) => [k.replace(/\.\d+\./, '.N.'), p.dtype]));
  expect(dtypes.get('text_model.embeddings.token_embedding.weight')).toBe('float16');
  expect(dtypes.get('text_model.encoder.layers.N.self_attn.q_proj.weight')).toBe('float16');
  expect(dtypes.get('text_model.encoder.layers.N.self_attn.q_proj.bias')).toBe('float32');
  expect(dtypes.get('text_model.final_layer_norm.weight')).toBe('float32');
});
