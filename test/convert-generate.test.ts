/**
 * A converted float32 folder generates exactly what its diffusers folder generates (issue 7), for a UNet
 * pipeline with TGATE and for PixArt, loading the converted copy through the same loadPipeline.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';
import { convertPipeline } from '../src/convert/convert.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionXLPipeline } from '../src/pipelines/stable-diffusion-xl.js';

let tmp: string;
beforeAll(async () => {
  await useBackend('wasm');
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-convgen-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test.each([
  ['sd15_tiny', 'tgate/sd15_ddim_baseline', { tgate: { gateStep: 3 } }],
  ['pixart_tiny', 'tgate/pixart_dpmpp2m_baseline', { height: 128, width: 128, tgate: { gateStep: 3 } }],
] as const)('%s: converted float32 folder == diffusers folder', async (name, inputs, extra) => {
  const out = path.join(tmp, name);
  await convertPipeline(fixture('pipelines', name), out, { quantize: 'none', shardMb: 0.05 });
  const g = await loadFixture(`${inputs}.safetensors`);
  const opts = {
    promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
    promptAttentionMask: g['in.prompt_attention_mask'], negativePromptAttentionMask: g['in.negative_prompt_attention_mask'],
    latents: g['in.latents'], numInferenceSteps: 5, guidanceScale: 7.5, outputType: 'latent' as const, ...extra,
  };
  const results: tf.Tensor[] = [];
  for (const dir of [fixture('pipelines', name), out]) {
    const pipe = (await loadPipeline(dir)) as StableDiffusionXLPipeline;
    results.push((await pipe.generate(opts)).latents);
    pipe.dispose();
  }
  const err = relL2T(results[1], results[0]);
  console.log(`${name}: converted vs diffusers folder rel-L2 ${err}`);
  expect(err).toBeLessThanOrEqual(1e-6);
  tf.dispose([...results, ...Object.values(g)]);
}, 180_000);
