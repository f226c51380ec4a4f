/** CLIP text encoders against transformers' forward passes (goldens/clip_tiny_*), pooling rules, errors, leaks. */
import * as tf from '@tensorflow/tfjs-core';
import { CLIPTextModel, CLIPTextModelWithProjection, type CLIPTextOutput } from '../src/models/clip-text.js';
import { readComponentConfig } from '../src/io/diffusers-folder.js';
import { TEST_BACKENDS, fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';

const BOUND: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };

const CASES: [string, string, boolean, number][] = [
  ['clip_tiny_sd15_forward', 'pipelines/sd15_tiny/text_encoder', false, 39823],
  ['clip_tiny_sdxl_te1_forward', 'pipelines/sdxl_tiny/text_encoder', false, 39823],
  ['clip_tiny_sdxl_te2_forward', 'pipelines/sdxl_tiny/text_encoder_2', true, 40847],
];

function disposeOut(o: CLIPTextOutput): void {
  tf.dispose([o.lastHiddenState, ...o.hiddenStates, o.pooledOutput ?? [], o.textEmbeds ?? []]);
}

describe.each(TEST_BACKENDS)('CLIP text goldens on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });

  test.each(CASES)('%s', async (golden, dir, withProjection, params) => {
    const ref = await loadFixture(`goldens/${golden}.safetensors`);
    const model = withProjection
      ? await CLIPTextModelWithProjection.fromPretrained(fixture(dir))
      : await CLIPTextModel.fromPretrained(fixture(dir));
    try {
      expect(model.numParameters()).toBe(params);
      const ids = ref['in.input_ids'];
      expect(ids.dtype).toBe('int32');
      const out = model.forward({ inputIds: ids });
      const hs = out.hiddenStates;
      expect(hs.length).toBe(model.config.numHiddenLayers + 1);
      // Forward order, so a failure names the first tensor that diverged.
      const checks: [string, tf.Tensor][] = [
        ['hidden_states_0_embeddings', hs[0]],
        ['hidden_states_penultimate', hs[hs.length - 2]],
        ['last_hidden_state', out.lastHiddenState],
        withProjection ? ['text_embeds', out.textEmbeds!] : ['pooler_output', out.pooledOutput!],
      ];
      const errs: Record<string, number> = {};
      for (const [name, t] of checks) {
        const e = relL2T(t, ref[name]);
        errs[name] = e;
        if (!(e <= BOUND[backend])) throw new Error(`${golden} on ${backend}: first divergence at ${name}: rel-L2 ${e} > ${BOUND[backend]}`);
      }
      console.log(`${golden} ${backend} rel-L2 ${JSON.stringify(errs)}`);
      disposeOut(out);

      // Two more forwards leave no tensor behind once outputs are disposed.
      const before = tf.memory().numTensors;
      for (let i = 0; i < 2; i++) disposeOut(model.forward({ inputIds: ids }));
      expect(tf.memory().numTensors).toBe(before);

      // number[][] input gives the same result as the tensor.
      const rows = ids.arraySync() as number[][];
      const o2 = model.forward({ inputIds: rows, outputHiddenStates: false });
      expect(o2.hiddenStates).toEqual([]);
      expect(relL2T(o2.lastHiddenState, ref.last_hidden_state)).toBeLessThanOrEqual(BOUND[backend]);
      disposeOut(o2);
    } finally {
      model.dispose();
      tf.dispose(Object.values(ref));
    }
  });
});

/** A tiny config whose eos id is not the highest id, so the two pooling rules pick different positions. */
function tinyConfig(eos: number): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'], vocab_size: 12, hidden_size: 8, intermediate_size: 10, num_hidden_layers: 1,
    num_attention_heads: 2, max_position_embeddings: 6, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, eos_token_id: eos,
  };
}

function pooledRowsMatch(out: CLIPTextOutput, positions: number[]): void {
  const last = out.lastHiddenState.arraySync();
  const pooled = out.pooledOutput!.arraySync();
  positions.forEach((p, b) => expect(pooled[b]).toEqual(last[b][p]));
}

describe('CLIP pooling follows eos_token_id', () => {
  // row 0: eos (5) first at 1, highest id (11) at 2; row 1: no eos, highest id first at 3 (tie at 4);
  // row 2: eos at 4, highest id at 0.
  const ids = [[0, 5, 11, 5, 3, 1], [0, 1, 2, 9, 9, 4], [10, 1, 2, 3, 5, 5]];

  test('eos_token_id 5 pools at the first eos (argmax of ids == eos; 0 when absent)', () => {
    const m = CLIPTextModel.fromConfig(tinyConfig(5));
    m.initRandom(3, 0.5);
    expect(m.poolPositions(Int32Array.from(ids.flat()), 3, 6)).toEqual([1, 0, 4]);
    const out = m.forward({ inputIds: ids });
    pooledRowsMatch(out, [1, 0, 4]);
    disposeOut(out);
    m.dispose();
  });

  test('eos_token_id 2 keeps the legacy rule (first position of the highest id)', () => {
    const m = CLIPTextModel.fromConfig(tinyConfig(2));
    m.initRandom(3, 0.5);
    const out = m.forward({ inputIds: ids });
    pooledRowsMatch(out, [2, 3, 0]);
    disposeOut(out);
    m.dispose();
  });

  test('attention_mask hides padded keys; causal mask hides later keys', () => {
    const m = CLIPTextModel.fromConfig(tinyConfig(5));
    m.initRandom(4, 0.5);
    // Changing a token only changes outputs at and after its position (causal).
    const a = m.forward({ inputIds: [[0, 1, 2, 3, 4, 5]] });
    const b = m.forward({ inputIds: [[0, 1, 2, 7, 4, 5]] });
    const la = a.lastHiddenState.arraySync()[0];
    const lb = b.lastHiddenState.arraySync()[0];
    expect(lb.slice(0, 3)).toEqual(la.slice(0, 3));
    expect(lb[3]).not.toEqual(la[3]);
    // Masking the last two keys: positions 0..3 equal the unmasked run, whose keys 4,5 are causally hidden anyway.
    const c = m.forward({ inputIds: [[0, 1, 2, 3, 4, 5]], attentionMask: [[1, 1, 1, 1, 0, 0]] });
    const lc = c.lastHiddenState.arraySync()[0];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 8; j++) expect(lc[i][j]).toBeCloseTo(la[i][j], 5);
    [a, b, c].forEach(disposeOut);
    m.dispose();
  });
});

describe('CLIP errors', () => {
  test('unsupported config values name the key', async () => {
    expect(() => CLIPTextModel.fromConfig({ ...tinyConfig(2), hidden_act: 'swiglu' })).toThrow(/hidden_act="swiglu"/);
    expect(() => CLIPTextModel.fromConfig({ ...tinyConfig(2), num_attention_heads: 3 })).toThrow(/num_attention_heads=3/);
    expect(() => CLIPTextModel.fromConfig({ ...tinyConfig(2), hidden_size: 'big' })).toThrow(/hidden_size="big"/);
    const cfg = await readComponentConfig(fixture('pipelines/sd15_tiny/text_encoder'));
    expect(cfg._class_name).toBe('CLIPTextModel');
  });

  test('bad inputs are rejected with the reason', () => {
    const m = CLIPTextModel.fromConfig(tinyConfig(2));
    m.initRandom(1);
    const before = tf.memory().numTensors;
    expect(() => m.forward({ inputIds: [[0, 1, 2, 3, 4, 5, 6]] })).toThrow(/length 7 exceeds max_position_embeddings 6/);
    expect(() => m.forward({ inputIds: [[0, 12]] })).toThrow(/token id 12 is outside the vocabulary/);
    expect(() => m.forward({ inputIds: [[0, 1], [2]] })).toThrow(/row 1 has 1 entries/);
    expect(() => m.forward({ inputIds: [[0, 1.5]] })).toThrow(/integers/);
    const t1 = tf.tensor1d([0, 1], 'int32');
    expect(() => m.forward({ inputIds: t1 })).toThrow(/\[batch, length\]/);
    t1.dispose();
    expect(() => m.forward({ inputIds: [[0, 1]], attentionMask: [[1, 1, 1]] })).toThrow(/attention_mask shape/);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });

  test('weights of the wrong model are reported by key', async () => {
    await expect(CLIPTextModel.fromPretrained(fixture('pipelines/sdxl_tiny/text_encoder_2'))).rejects.toThrow(/unexpected key: text_projection.weight/);
  });
});

describe('registry', () => {
  test('text encoder classes are built from config.json by class name', async () => {
    const { modelFromConfig } = await import('../src/models/registry.js');
    const { T5EncoderModel } = await import('../src/models/t5-encoder.js');
    const cases: [string, unknown][] = [
      ['pipelines/sd15_tiny/text_encoder', CLIPTextModel],
      ['pipelines/sdxl_tiny/text_encoder_2', CLIPTextModelWithProjection],
      ['pipelines/pixart_tiny/text_encoder', T5EncoderModel],
    ];
    for (const [dir, cls] of cases) {
      const m = modelFromConfig(await readComponentConfig(fixture(dir)));
      expect(m).toBeInstanceOf(cls as new (...a: never[]) => unknown);
    }
  });
});
