/**
 * SD generations with the reference LoRA at scale 0.8 (ext2/lora/sd15_tiny_lora0.8_ddim_{baseline,tgate_gate7}):
 * the recorded runs of diffusers v0.30.3 (+ T-GATE ab2a88f) reproduced step by step through `pipe.loadLora`,
 * fused and unfused, from both file formats; the LoRA'd text encoder reproduces the recorded prompt embeddings.
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { TgateOptions } from '../src/attention/tgate.js';
import type { StepInfo } from '../src/pipelines/denoise.js';

const schedIndex = readPythonJson<{ cases: Record<string, { config_passed: Record<string, unknown> }> }>(fixture('schedulers/index.json'));
const index = JSON.parse(fs.readFileSync(fixture('ext2/lora/index.json'), 'utf8'));
const PEFT = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');
const KOHYA = fixture('ext2/models/sd15_tiny_lora/kohya_lora.safetensors');
const GATE7: TgateOptions = { gateStep: 7, spInterval: 5, fiInterval: 1, warmUp: 2 };

interface Case { run: 'baseline' | 'tgate_gate7'; file: string; fused: boolean }
const CASES: Case[] = [
  { run: 'baseline', file: KOHYA, fused: true },
  { run: 'tgate_gate7', file: PEFT, fused: true },
  { run: 'baseline', file: PEFT, fused: false },
  { run: 'tgate_gate7', file: KOHYA, fused: false },
];

describe.each(['wasm', 'cpu'] as const)('LoRA generations reproduce diffusers on %s', (backend) => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => {
    await useBackend(backend);
    pipe = await loadPipeline(fixture('pipelines/sd15_tiny')) as StableDiffusionPipeline;
    pipe.scheduler.dispose();
    // The ext2 run's DDIM config is the public tree's SD config (ext2 README, Conventions).
    pipe.scheduler = schedulerFromConfig(schedIndex.cases.ddim_sd.config_passed, 'DDIMScheduler');
  });
  afterAll(() => pipe.dispose());

  test.each(CASES.map((c) => [`${c.run}, ${c.file.includes('kohya') ? 'kohya' : 'peft'} file, ${c.fused ? 'fused' : 'unfused'}`, c] as const))('%s', async (_n, c) => {
    const g = await loadFixture(`ext2/lora/sd15_tiny_lora0.8_ddim_${c.run}.safetensors`);
    const weights = tf.memory().numTensors;
    await pipe.loadLora(c.file, { scale: 0.8, name: 'cat' });
    if (c.fused) await pipe.fuseLora();
    expect(pipe.listLoras()).toEqual([expect.objectContaining({ name: 'cat', scale: 0.8, fused: c.fused, modules: { unet: 48, text_encoder: 12 } })]);

    // The LoRA'd text encoder gives the recorded embeddings.
    const embErrs = (['input_ids', 'negative_input_ids'] as const).map((ids) => {
      const out = pipe.textEncoder.forward({ inputIds: g[`in.${ids}`], outputHiddenStates: false });
      const e = relL2T(out.lastHiddenState, g[ids === 'input_ids' ? 'prompt_embeds' : 'negative_prompt_embeds']);
      tf.dispose([out.lastHiddenState, out.pooledOutput ?? []]);
      return e;
    });
    for (const e of embErrs) expect(e).toBeLessThanOrEqual(backend === 'cpu' ? 1e-5 : 1e-4);

    const stepLatents = tf.unstack(g.step_latents);
    const errs: number[] = [];
    const batches: number[] = [];
    const before = tf.memory().numTensors;
    const { latents } = await pipe.generate({
      promptEmbeds: g.prompt_embeds, negativePromptEmbeds: g.negative_prompt_embeds, latents: g['in.latents'],
      numInferenceSteps: 10, guidanceScale: 7.5, height: 64, width: 64, outputType: 'latent',
      tgate: c.run === 'tgate_gate7' ? GATE7 : undefined,
      onStep: (s: StepInfo) => { batches.push(s.batch); errs.push(relL2T(s.latents, stepLatents[s.step])); },
    });
    const finalErr = relL2T(latents, g.final_latents);
    latents.dispose();
    expect(tf.memory().numTensors).toBe(before);
    console.log(`${backend} lora ${_n}: prompt embeds ${embErrs.map((e) => e.toExponential(2)).join('/')}, worst step ${Math.max(...errs).toExponential(2)}, final ${finalErr.toExponential(2)}`);
    errs.forEach((e, i) => { if (!(e <= 1e-4)) throw new Error(`step ${i} latents differ: rel-L2 ${e}`); });
    expect(finalErr).toBeLessThanOrEqual(1e-4);
    expect(batches).toEqual(c.run === 'baseline' ? new Array(10).fill(2) : index['sd15_tiny_lora0.8_ddim'].tgate_batch_per_step);

    await pipe.unloadLora();
    expect(pipe.listLoras()).toEqual([]);
    stepLatents.forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(weights);
    tf.dispose(Object.values(g));
  }, 300_000);
});

describe('LoRA with DeepCache (wasm)', () => {
  test('a DeepCache generation with the LoRA unfused equals the one with it fused', async () => {
    await useBackend('wasm');
    const pipe = await loadPipeline(fixture('pipelines/sd15_tiny')) as StableDiffusionPipeline;
    pipe.scheduler.dispose();
    pipe.scheduler = schedulerFromConfig(schedIndex.cases.ddim_sd.config_passed, 'DDIMScheduler');
    const g = await loadFixture('ext2/lora/sd15_tiny_lora0.8_ddim_baseline.safetensors');
    const run = async () => (await pipe.generate({
      promptEmbeds: g.prompt_embeds, negativePromptEmbeds: g.negative_prompt_embeds, latents: g['in.latents'],
      numInferenceSteps: 10, guidanceScale: 7.5, height: 64, width: 64, outputType: 'latent', deepcache: { cacheInterval: 3 }, tgate: GATE7,
    })).latents;
    try {
      const plain = await run();
      await pipe.loadLora(KOHYA, { scale: 0.8 });
      const unfused = await run();
      await pipe.fuseLora();
      const fused = await run();
      const e = relL2T(unfused, fused);
      const moved = relL2T(fused, plain);
      console.log(`wasm lora + DeepCache + TGATE: unfused vs fused rel-L2 ${e.toExponential(2)} (the LoRA moves the result by ${moved.toExponential(2)})`);
      expect(e).toBeLessThanOrEqual(1e-5);
      expect(moved).toBeGreaterThan(1e-2);
      tf.dispose([plain, unfused, fused]);
    } finally {
      pipe.dispose();
      tf.dispose(Object.values(g));
    }
  });
});
