/**
 * PixArt-Σ: a PixArtSigmaPipeline folder (Σ's transformer config: sample_size 128, interpolation_scale 2, no
 * additional conditions) loaded by loadPipeline, its 300-token T5 prompt encoding, and runs with and without TGATE
 * against diffusers v0.30.3 + T-GATE ab2a88f (test/fixtures/ext2/pixart_sigma).
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2, relL2T, useBackend } from './support/helpers.js';
import { assemblePipeline, describeReplays, ext2Json, pipelineCache, type IndexFlag, type ReplayCase, type Tensors } from './support/replay.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { PixArtSigmaPipeline } from '../src/pipelines/pixart-sigma.js';
import { PixArtTransformer2DModel } from '../src/models/pixart-transformer.js';

const index = ext2Json<{ pixart_sigma_dpm: { baseline_batch_per_step: number[]; tgate_batch_per_step: number[]; flags: IndexFlag[] } }>('ext2/pixart_sigma/index.json');

// PixArtSigmaPipeline(tokenizer/text_encoder/vae of pixart_tiny, Σ's transformer and scheduler), as recorded.
const dir = assemblePipeline(fixture('pipelines/pixart_tiny'), {
  index: { _class_name: 'PixArtSigmaPipeline' },
  replace: { transformer: fixture('ext2/models/pixart_sigma_tiny/transformer'), scheduler: fixture('ext2/models/pixart_sigma_tiny/scheduler') },
});
const pipes = pipelineCache(() => loadPipeline(dir) as Promise<PixArtSigmaPipeline>);
const pipeline = () => pipes.get('sigma');
afterAll(async () => {
  await pipes.release();
  fs.rmSync(dir, { recursive: true, force: true });
});

const CASES: ReplayCase[] = (['baseline', 'tgate_gate7'] as const).map((v) => {
  const tgate = v === 'baseline' ? undefined : { gateStep: 7, spInterval: 5, fiInterval: 1, warmUp: 2 };
  const r = index.pixart_sigma_dpm;
  return {
    file: `ext2/pixart_sigma/pixart_sigma_dpm_${v}`, batches: tgate ? r.tgate_batch_per_step : r.baseline_batch_per_step, flags: tgate && r.flags,
    options: (g: Tensors) => ({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
      promptAttentionMask: g['in.prompt_attention_mask'], negativePromptAttentionMask: g['in.negative_prompt_attention_mask'],
      latents: g['in.latents'], numInferenceSteps: 10, guidanceScale: 4.5, height: 96, width: 96, tgate,
    }),
  };
});

test('loadPipeline picks PixArtSigmaPipeline from model_index.json; Σ’s pos-embed for a 6×6 grid', async () => {
  await useBackend('wasm');
  const p = await pipeline();
  expect(p).toBeInstanceOf(PixArtSigmaPipeline);
  const c = p.transformer.config;
  expect([c.sampleSize, c.interpolationScale, c.useAdditionalConditions]).toEqual([128, 2, false]);
  const g = await loadFixture('ext2/pixart_sigma/pixart_sigma_dpm_baseline.safetensors');
  const err = relL2(p.transformer.pos_embed.posEmbed(6, 6), g.pos_embed_used.dataSync());
  console.log(`pos_embed_used rel-L2 ${err.toExponential(2)}`);
  expect(err).toBeLessThanOrEqual(1e-6);
  Object.values(g).forEach((t) => t.dispose());
}, 60_000);

test('prompts are encoded to 300 T5 tokens by default (max_sequence_length of PixArt-Σ)', async () => {
  await useBackend('wasm');
  const p = await pipeline();
  const g = await loadFixture('ext2/pixart_sigma/encode_prompt_t5_300.safetensors');
  const prompts = ext2Json<{ encode_prompt_t5_300: { prompts: string[] } }>('ext2/pixart_sigma/index.json').encode_prompt_t5_300.prompts;
  const before = tf.memory().numTensors;
  const pos = p.encodePrompt(prompts);
  const neg = p.encodePrompt(['', '']);
  const errs = [relL2T(pos.embeds, g.prompt_embeds), relL2T(neg.embeds, g.negative_prompt_embeds)];
  console.log(`T5 300-token embeds rel-L2 ${errs.map((e) => e.toExponential(2)).join(', ')}`);
  errs.forEach((e) => expect(e).toBeLessThanOrEqual(1e-5));
  expect(Array.from(pos.mask.dataSync())).toEqual(Array.from(g.prompt_attention_mask.dataSync()));
  expect(Array.from(neg.mask.dataSync())).toEqual(Array.from(g.negative_prompt_attention_mask.dataSync()));
  tf.dispose([pos.embeds, pos.mask, neg.embeds, neg.mask]);
  expect(tf.memory().numTensors).toBe(before);
  Object.values(g).forEach((t) => t.dispose());
}, 60_000);

describeReplays('PixArt-Σ runs reproduce diffusers + T-GATE', CASES, ['ext2/pixart_sigma/pixart_sigma_dpm_tgate_gate7'], pipes, () => 'sigma');

test('a Σ pipeline refuses a transformer that wants resolution conditions (the Σ pipeline passes none)', async () => {
  const p = await pipeline();
  const transformer = PixArtTransformer2DModel.fromConfig({ ...ext2Json('ext2/models/pixart_sigma_tiny/transformer/config.json'), use_additional_conditions: true });
  const sigma = new PixArtSigmaPipeline({ transformer, vae: p.vae, scheduler: p.scheduler });
  await expect(sigma.generate({ prompt: 'a' })).rejects.toThrow(/use_additional_conditions true, but the Σ pipeline passes no resolution conditions/);
  transformer.dispose();
});
