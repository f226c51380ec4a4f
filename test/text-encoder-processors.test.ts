/**
 * The text encoders' attentions go through the processor seam like the denoisers': one processor per attention
 * layer under transformers' module paths, and swapping in another processor (chunked, analysis, a recording
 * wrapper) leaves the output as the golden has it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../src/models/clip-text.js';
import { T5EncoderModel } from '../src/models/t5-encoder.js';
import { AttnProcessorChunked, AttnProcessorDefault } from '../src/attention/processor.js';
import { AttentionStoreProcessor } from '../src/attention/attention-store.js';
import { wrapProcessors } from '../src/attention/registry.js';
import type { Module } from '../src/nn/module.js';
import { TEST_BACKENDS, fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';

const BOUND: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };

interface Encoder {
  model: Module & Pick<T5EncoderModel, 'attnProcessors' | 'setAttnProcessor'>;
  /** The output compared with the golden. */
  run: () => tf.Tensor;
  ref: tf.Tensor;
  paths: string[];
  /** Sequence length L. */
  length: number;
  /** Bytes of one query row's scores, [B, heads, 1, L]: the chunked processor gets room for 3 rows. */
  rowBytes: number;
  dispose: () => void;
}

async function clip(golden: string, dir: string, projection: boolean): Promise<Encoder> {
  const g = await loadFixture(`goldens/${golden}.safetensors`);
  const model = projection ? await CLIPTextModelWithProjection.fromPretrained(fixture(dir)) : await CLIPTextModel.fromPretrained(fixture(dir));
  const ids = g['in.input_ids'];
  const c = model.config;
  return {
    model,
    run: () => {
      const o = model.forward({ inputIds: ids, outputHiddenStates: false });
      tf.dispose([o.pooledOutput ?? [], o.textEmbeds ?? []]);
      return o.lastHiddenState;
    },
    ref: g.last_hidden_state,
    paths: Array.from({ length: c.numHiddenLayers }, (_, i) => `text_model.encoder.layers.${i}.self_attn`),
    length: ids.shape[1]!,
    rowBytes: ids.shape[0] * c.numAttentionHeads * ids.shape[1]! * 4,
    dispose: () => { model.dispose(); tf.dispose(Object.values(g)); },
  };
}

async function t5(): Promise<Encoder> {
  const g = await loadFixture('goldens/t5_tiny_forward.safetensors');
  const model = await T5EncoderModel.fromPretrained(fixture('pipelines/pixart_tiny/text_encoder'));
  const ids = g['in.input_ids'];
  const c = model.config;
  return {
    model,
    run: () => model.forward({ inputIds: ids, attentionMask: g['in.attention_mask'] }).lastHiddenState,
    ref: g.last_hidden_state,
    paths: Array.from({ length: c.numLayers }, (_, i) => `encoder.block.${i}.layer.0.SelfAttention`),
    length: ids.shape[1]!,
    rowBytes: ids.shape[0] * c.numHeads * ids.shape[1]! * 4,
    dispose: () => { model.dispose(); tf.dispose(Object.values(g)); },
  };
}

const CASES: [string, () => Promise<Encoder>][] = [
  ['CLIPTextModel (SD-1.5)', () => clip('clip_tiny_sd15_forward', 'pipelines/sd15_tiny/text_encoder', false)],
  ['CLIPTextModelWithProjection (SDXL)', () => clip('clip_tiny_sdxl_te2_forward', 'pipelines/sdxl_tiny/text_encoder_2', true)],
  ['T5EncoderModel (PixArt-α)', t5],
];

describe.each(TEST_BACKENDS)('text encoder attention processors on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });

  test.each(CASES)('%s', async (name, make) => {
    const enc = await make();
    const { model } = enc;
    try {
      const procs = model.attnProcessors();
      expect([...procs.keys()]).toEqual(enc.paths.map((p) => `${p}.processor`));
      expect([...procs.values()].every((p) => p instanceof AttnProcessorDefault)).toBe(true);
      const before = tf.memory().numTensors;
      const base = enc.run();
      const errs: Record<string, number> = { default: relL2T(base, enc.ref) };

      expect(enc.length).toBeGreaterThan(3); // so 3-row chunks do split
      model.setAttnProcessor(new AttnProcessorChunked(3 * enc.rowBytes));
      const chunked = enc.run();
      errs.chunked = relL2T(chunked, enc.ref);
      errs.chunked_vs_default = relL2T(chunked, base);

      // Analysis: same computation as the default; the same input twice changes nothing.
      const store = new AttentionStoreProcessor(model);
      model.setAttnProcessor(store);
      const stored = [enc.run(), enc.run()];
      errs.store_vs_default = relL2T(stored[1], base);
      const steps = store.steps();
      expect(steps.map((s) => s.step)).toEqual([1]);
      expect(Object.keys(steps[0].attn1!.per_module)).toEqual(enc.paths);
      expect(steps[0].attn2).toBeUndefined();
      expect(steps[0].attn1!.mean.out_l2).toBe(0);
      expect(steps[0].attn1!.mean.probs_l2).toBe(0);
      expect(store.heldTensors).toBe(2 * enc.paths.length);
      store.reset();

      // A recording wrapper sees every attention once, in forward order, and changes nothing.
      model.setAttnProcessor(new AttnProcessorDefault());
      const seen: string[] = [];
      const restore = wrapProcessors(model, (inner, path) => ({
        call: (attn, hidden, e, bias, ctx) => { seen.push(path); return inner.call(attn, hidden, e, bias, ctx); },
      }));
      const recorded = enc.run();
      restore();
      expect(seen).toEqual(enc.paths);
      errs.recorded_vs_default = relL2T(recorded, base);
      console.log(`${name} ${backend} rel-L2 ${JSON.stringify(errs)}`);

      expect(errs.default).toBeLessThanOrEqual(BOUND[backend]);
      expect(errs.chunked).toBeLessThanOrEqual(BOUND[backend]);
      expect(errs.chunked_vs_default).toBeLessThanOrEqual(1e-6);
      expect(errs.store_vs_default).toBe(0);
      expect(errs.recorded_vs_default).toBe(0);
      tf.dispose([base, chunked, ...stored, recorded]);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      enc.dispose();
    }
  });
});
