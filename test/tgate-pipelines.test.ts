/**
 * Every TGATE, baseline, LCM and DeepCache run in the fixtures reproduced end to end: per-step latents,
 * final latents and the denoiser batch per step (diffusers v0.30.3 + T-GATE ab2a88f + DeepCache).
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { loadModel } from '../src/models/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { tgateFlags, resolveTgate, type TgateOptions } from '../src/attention/tgate.js';
import type { StableDiffusionPipeline, SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';
import type { StableDiffusionXLPipeline } from '../src/pipelines/stable-diffusion-xl.js';
import type { PixArtAlphaPipeline } from '../src/pipelines/pixart-alpha.js';
import type { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import type { StepInfo } from '../src/pipelines/denoise.js';

const schedIndex = readPythonJson<{ cases: Record<string, { config_passed: Record<string, unknown> }> }>(fixture('schedulers/index.json'));
const schedConfig = (name: string) => schedIndex.cases[name].config_passed as Record<string, unknown>;

interface Case {
  file: string;
  pipeline: 'sd15_tiny' | 'sdxl_tiny' | 'pixart_tiny';
  scheduler?: { cls: string; config?: Record<string, unknown> };
  unet?: string;
  steps: number;
  guidance: number;
  size?: number;
  tgate?: TgateOptions;
  deepcache?: { cacheInterval: number; cacheBranchId: number };
  /** index.json entry with flags / batch per step. */
  flags?: { flags?: { step: number; cfg: boolean; ca_cache: boolean; ca_reuse: boolean; sa_cache: boolean; sa_reuse: boolean; keep_shape: boolean }[]; unet_batch_per_step?: number[] };
  full?: boolean[];
  /** Fixture holding the inputs when the run's own file records only outputs. */
  inputs?: string;
}

const pub = JSON.parse(fs.readFileSync(fixture('tgate/index.json'), 'utf8'));
const ext = JSON.parse(fs.readFileSync(fixture('ext/tgate/index.json'), 'utf8'));
const dcIndex = JSON.parse(fs.readFileSync(fixture('ext/deepcache/index.json'), 'utf8'));
const T = (gateStep: number, spInterval = 5, fiInterval = 1, warmUp = 2, lcm = false): TgateOptions => ({ gateStep, spInterval, fiInterval, warmUp, lcm });
const DDIM = { cls: 'DDIMScheduler', config: schedConfig('ddim_sd') };
const DPM = { cls: 'DPMSolverMultistepScheduler', config: schedConfig('dpmpp2m_sd') };
const LCM = { cls: 'LCMScheduler' };

const CASES: Case[] = [
  { file: 'tgate/sd15_ddim_baseline', pipeline: 'sd15_tiny', scheduler: DDIM, steps: 10, guidance: 7.5 },
  { file: 'tgate/sd15_ddim_tgate_gate4', pipeline: 'sd15_tiny', scheduler: DDIM, steps: 10, guidance: 7.5, tgate: T(4), flags: pub.sd.ddim_gate4 },
  { file: 'tgate/sd15_ddim_tgate_gate7', pipeline: 'sd15_tiny', scheduler: DDIM, steps: 10, guidance: 7.5, tgate: T(7), flags: pub.sd.ddim_gate7 },
  { file: 'tgate/sd15_dpmpp2m_baseline', pipeline: 'sd15_tiny', scheduler: DPM, steps: 10, guidance: 7.5 },
  { file: 'tgate/sd15_dpmpp2m_tgate_gate4', pipeline: 'sd15_tiny', scheduler: DPM, steps: 10, guidance: 7.5, tgate: T(4), flags: pub.sd.dpmpp2m_gate4 },
  { file: 'tgate/sd15_dpmpp2m_tgate_gate7', pipeline: 'sd15_tiny', scheduler: DPM, steps: 10, guidance: 7.5, tgate: T(7), flags: pub.sd.dpmpp2m_gate7 },
  { file: 'tgate/pixart_dpmpp2m_baseline', pipeline: 'pixart_tiny', steps: 10, guidance: 4.5, size: 128 },
  { file: 'tgate/pixart_dpmpp2m_tgate_gate4', pipeline: 'pixart_tiny', steps: 10, guidance: 4.5, size: 128, tgate: T(4), inputs: 'tgate/pixart_dpmpp2m_baseline' },
  { file: 'ext/tgate/pixart_dpmpp2m_tgate_gate7', pipeline: 'pixart_tiny', steps: 10, guidance: 4.5, size: 128, tgate: T(7), flags: ext.pixart.dpmpp2m_gate7 },
  { file: 'ext/tgate/pixart_lcm_baseline', pipeline: 'pixart_tiny', scheduler: LCM, steps: 4, guidance: 0, size: 128 },
  { file: 'ext/tgate/pixart_lcm_tgate_gate1', pipeline: 'pixart_tiny', scheduler: LCM, steps: 4, guidance: 0, size: 128, tgate: T(1, 1, 1, 0, true), flags: ext.pixart.lcm_gate1 },
  { file: 'ext/tgate/pixart_lcm_tgate_gate2', pipeline: 'pixart_tiny', scheduler: LCM, steps: 4, guidance: 0, size: 128, tgate: T(2, 1, 1, 0, true), flags: ext.pixart.lcm_gate2 },
  { file: 'ext/tgate/sdxl_euler_baseline', pipeline: 'sdxl_tiny', steps: 10, guidance: 5, size: 256, flags: ext.sdxl.sdxl_euler_baseline },
  { file: 'ext/tgate/sdxl_euler_tgate_gate4', pipeline: 'sdxl_tiny', steps: 10, guidance: 5, size: 256, tgate: T(4), flags: ext.sdxl.sdxl_euler_tgate_gate4 },
  { file: 'ext/tgate/sdxl_euler_tgate_gate7', pipeline: 'sdxl_tiny', steps: 10, guidance: 5, size: 256, tgate: T(7), flags: ext.sdxl.sdxl_euler_tgate_gate7 },
  ...(['baseline', 'tgate_gate1', 'tgate_gate2'] as const).flatMap((v, g): Case[] => [
    {
      file: `ext/tgate/lcm_sdxl_condunet_g5_${v}`, pipeline: 'sdxl_tiny', unet: 'ext/models/sdxl_tiny_lcm_unet', scheduler: LCM, steps: 4, guidance: 5, size: 256,
      tgate: g ? T(g, 1, 1, 0, true) : undefined, flags: ext.lcm_sdxl[`lcm_sdxl_condunet_g5_${v}`],
    },
    {
      file: `ext/tgate/lcm_sdxl_tiny_g1_${v}`, pipeline: 'sdxl_tiny', scheduler: LCM, steps: 4, guidance: 1, size: 256,
      tgate: g ? T(g, 1, 1, 0, true) : undefined, flags: ext.lcm_sdxl[`lcm_sdxl_tiny_g1_${v}`],
    },
  ]),
  { file: 'ext/deepcache/sd15_ddim_deepcache', pipeline: 'sd15_tiny', scheduler: DDIM, steps: 10, guidance: 7.5, deepcache: { cacheInterval: 3, cacheBranchId: 0 }, full: dcIndex.deepcache_only.full_unet_step },
  {
    file: 'ext/deepcache/sd15_ddim_deepcache_tgate_gate4_sp1_fi1_wu0', pipeline: 'sd15_tiny', scheduler: DDIM, steps: 10, guidance: 7.5, tgate: T(4, 1, 1, 0),
    deepcache: { cacheInterval: 3, cacheBranchId: 0 }, flags: dcIndex.deepcache_tgate_gate4_sp1_fi1_wu0, full: dcIndex.deepcache_tgate_gate4_sp1_fi1_wu0.full_unet_step,
  },
  {
    file: 'ext/deepcache/sd15_ddim_deepcache_tgate_gate7_sp5_fi1_wu2', pipeline: 'sd15_tiny', scheduler: DDIM, steps: 10, guidance: 7.5, tgate: T(7),
    deepcache: { cacheInterval: 3, cacheBranchId: 0 }, flags: dcIndex.deepcache_tgate_gate7_sp5_fi1_wu2, full: dcIndex.deepcache_tgate_gate7_sp5_fi1_wu2.full_unet_step,
  },
];

describe('the TGATE schedule equals T-GATE’s flags for every recorded run', () => {
  test.each(CASES.filter((c) => c.tgate && c.flags?.flags).map((c) => [c.file, c] as const))('%s', (_f, c) => {
    const r = resolveTgate(c.tgate!, c.steps);
    for (const f of c.flags!.flags!) {
      const got = tgateFlags(f.step, r);
      expect({ step: f.step, ...got }).toEqual({ step: f.step, caCache: f.ca_cache, caReuse: f.ca_reuse, saCache: f.sa_cache, saReuse: f.sa_reuse, keepShape: f.keep_shape });
      expect(f.cfg).toBe(c.guidance > 1 && f.step < r.gateStep && !c.unet);
    }
  });
});

const pipes = new Map<string, Promise<StableDiffusionPipeline | PixArtAlphaPipeline>>();
function pipeline(name: string) {
  if (!pipes.has(name)) pipes.set(name, loadPipeline(fixture('pipelines', name)) as Promise<StableDiffusionPipeline | PixArtAlphaPipeline>);
  return pipes.get(name)!;
}

async function runCase(c: Case, backend = 'cpu'): Promise<void> {
  const g = await loadFixture(`${c.file}.safetensors`);
  if (c.inputs) {
    const inp = await loadFixture(`${c.inputs}.safetensors`);
    for (const [k, t] of Object.entries(inp)) { if (k.startsWith('in.')) g[k] = t; else t.dispose(); }
  }
  const pipe = await pipeline(c.pipeline);
  const shipped = pipe.scheduler;
  const origUnet = 'unet' in pipe ? pipe.unet : null;
  if (c.scheduler) pipe.scheduler = schedulerFromConfig(c.scheduler.config ?? shipped.config, c.scheduler.cls);
  if (c.unet) (pipe as StableDiffusionPipeline).unet = await loadModel<UNet2DConditionModel>(fixture(c.unet));
  const noise = g.noise ? tf.unstack(g.noise) : [];
  const noiseStep = g.noise_step ? Array.from(g.noise_step.dataSync()) : [];
  const stepLatents = tf.unstack(g.step_latents);
  const batches: number[] = [];
  const errs: number[] = [];
  const opts: SDGenerateOptions & Record<string, unknown> = {
    promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
    pooledPromptEmbeds: g['in.pooled_prompt_embeds'], negativePooledPromptEmbeds: g['in.negative_pooled_prompt_embeds'],
    promptAttentionMask: g['in.prompt_attention_mask'], negativePromptAttentionMask: g['in.negative_prompt_attention_mask'],
    latents: g['in.latents'], numInferenceSteps: c.steps, guidanceScale: c.guidance, outputType: 'latent',
    height: c.size, width: c.size, tgate: c.tgate, deepcache: c.deepcache,
    stepNoise: (i: number) => { const k = noiseStep.indexOf(i); return k >= 0 ? noise[k] : undefined; },
    onStep: (s: StepInfo) => {
      batches.push(s.batch);
      errs.push(relL2T(s.latents, stepLatents[s.step]));
    },
  };
  const before = tf.memory().numTensors;
  const { latents } = await (pipe as StableDiffusionXLPipeline).generate(opts);
  const finalErr = relL2T(latents, g.final_latents);
  latents.dispose();
  expect(tf.memory().numTensors).toBe(before);
  const worst = Math.max(...errs);
  console.log(`${backend} ${c.file}: worst step rel-L2 ${worst.toExponential(2)}, final ${finalErr.toExponential(2)}`);
  errs.forEach((e, i) => { if (!(e <= 1e-4)) throw new Error(`step ${i} latents differ: rel-L2 ${e}`); });
  expect(finalErr).toBeLessThanOrEqual(1e-4);
  const wantBatch = c.flags?.unet_batch_per_step
    ?? (c.flags?.flags ? c.flags.flags.map((f) => (f.cfg ? 2 : 1))
      : Array.from({ length: c.steps }, (_, i) => (c.guidance > 1 && (!c.tgate || i < (c.tgate.gateStep as number)) ? 2 : 1)));
  expect(batches).toEqual(wantBatch);
  Object.keys(g).filter((k) => /^(unet|transformer)_out\.\d+$/.test(k)).forEach((k) => {
    expect(batches[Number(k.split('.')[1])]).toBe(g[k].shape[0]);
  });
  pipe.scheduler.dispose();
  pipe.scheduler = shipped;
  if (c.unet) { (pipe as StableDiffusionPipeline).unet.dispose(); (pipe as StableDiffusionPipeline).unet = origUnet!; }
  noise.forEach((t) => t.dispose());
  stepLatents.forEach((t) => t.dispose());
  Object.values(g).forEach((t) => t.dispose());
}

// The whole table runs on wasm (a tiny-UNet step takes ~0.3 s there) and a subset covering each pipeline,
// TGATE, LCM and DeepCache on cpu (~5 s a step); PIPELINE_CPU=all runs the whole table on cpu too.
const CPU_SUBSET = ['tgate/sd15_ddim_tgate_gate4', 'ext/tgate/pixart_dpmpp2m_tgate_gate7', 'ext/tgate/lcm_sdxl_condunet_g5_tgate_gate2',
  'ext/deepcache/sd15_ddim_deepcache_tgate_gate4_sp1_fi1_wu0'];
const PLAN: [string, Case[]][] = [
  ['wasm', CASES],
  ['cpu', process.env.PIPELINE_CPU === 'all' ? CASES : CASES.filter((c) => CPU_SUBSET.includes(c.file))],
];
describe.each(PLAN)('pipelines reproduce diffusers + T-GATE runs (%s)', (backend, cases) => {
  beforeAll(async () => {
    await releasePipelines();
    await useBackend(backend as 'wasm');
  });
  test.each(cases.map((c) => [c.file, c] as const))('%s', async (_f, c) => runCase(c, backend), 600_000);
});

describe('DeepCache runs the full UNet exactly on the recorded steps', () => {
  test.each(CASES.filter((c) => c.full).map((c) => [c.file, c] as const))('%s', async (_f, c) => {
    const { DeepCache } = await import('../src/pipelines/deepcache.js');
    const pipe = (await pipeline('sd15_tiny')) as StableDiffusionPipeline;
    const dc = new DeepCache(pipe.unet, c.deepcache!, c.tgate?.gateStep as number | undefined);
    const full: boolean[] = [];
    for (let i = 0; i < c.steps; i++) {
      dc.beforeStep(i);
      full.push(dc.fullSteps.includes(i));
    }
    dc.dispose();
    expect(full).toEqual(c.full);
  });
});

async function releasePipelines(): Promise<void> {
  for (const p of pipes.values()) (await p).dispose();
  pipes.clear();
}
afterAll(releasePipelines);
