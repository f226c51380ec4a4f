/**
 * Playground v2.5: a StableDiffusionXLPipeline folder with EDMDPMSolverMultistepScheduler (Karras sigmas) and a
 * VAE with latents_mean / latents_std and scaling factor 0.5, loaded from its folder and run with and without
 * TGATE, against diffusers v0.30.3 + T-GATE ab2a88f (test/fixtures/ext2/playground), for the EDM DPM-Solver++ and
 * EDM Euler samplers: EDM's float timesteps 0.25·log σ go straight into the UNet, and decoding denormalises.
 */
import fs from 'node:fs';
import { fixture, relL2T, loadFixture, useBackend } from './support/helpers.js';
import { assemblePipeline, expectReplay, ext2Json, pipelineCache, replay, type IndexFlag, type ReplayCase, type Tensors } from './support/replay.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { vaeDecodeInput } from '../src/pipelines/latents.js';
import { StableDiffusionXLPipeline } from '../src/pipelines/stable-diffusion-xl.js';

type Run = { scheduler: { class: string; config: Record<string, unknown> }; flags: IndexFlag[]; tgate_batch_per_step: number[] };
const index = ext2Json<Record<string, Run>>('ext2/playground/index.json');
const edmdpm = index.sdxl_tiny_playground_edmdpm.scheduler;

// playground-v2.5's folder layout: SDXL components, its scheduler and VAE configs (the tiny VAE's weights are sdxl_tiny's).
const dir = assemblePipeline(fixture('pipelines/sdxl_tiny'), {
  files: {
    'vae/config.json': ext2Json('ext2/models/sdxl_tiny_playground_vae/config.json'),
    'scheduler/scheduler_config.json': { _class_name: edmdpm.class, ...edmdpm.config },
  },
});
const pipes = pipelineCache(() => loadPipeline(dir) as Promise<StableDiffusionXLPipeline>);
const pipeline = () => pipes.get('playground');
afterAll(async () => {
  await pipes.release();
  fs.rmSync(dir, { recursive: true, force: true });
});

const CASES: ReplayCase[] = (['edmdpm', 'edmeuler'] as const).flatMap((s) => (['baseline', 'tgate_gate7'] as const).map((v): ReplayCase => {
  const r = index[`sdxl_tiny_playground_${s}`];
  const tgate = v === 'baseline' ? undefined : { gateStep: 7, spInterval: 5, fiInterval: 1, warmUp: 2 };
  return {
    file: `ext2/playground/sdxl_tiny_playground_${s}_${v}`, seed: 5406,
    // EDM DPM-Solver++ is the folder's own sampler; EDM Euler is swapped in as in the recorded run.
    scheduler: s === 'edmeuler' ? { cls: r.scheduler.class, config: r.scheduler.config } : undefined,
    batches: tgate ? r.tgate_batch_per_step : new Array<number>(10).fill(2), flags: tgate && r.flags,
    options: (g: Tensors) => ({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'],
      pooledPromptEmbeds: g['in.pooled_prompt_embeds'], negativePooledPromptEmbeds: g['in.negative_pooled_prompt_embeds'],
      latents: g['in.latents'], numInferenceSteps: 10, guidanceScale: 3, height: 96, width: 96, tgate,
    }),
  };
}));

test('the folder loads as SDXL with its EDM sampler and denormalising VAE', async () => {
  const p = await pipeline();
  expect(p).toBeInstanceOf(StableDiffusionXLPipeline);
  expect(p.scheduler.config._class_name).toBe('EDMDPMSolverMultistepScheduler');
  expect(p.vae.config.scalingFactor).toBe(0.5);
  expect(p.vae.config.latentsMean).toEqual([-1.6574, 1.886, -1.383, 2.5155]);
}, 60_000);

describe.each([['wasm', CASES], ['cpu', CASES.filter((c) => c.file.endsWith('edmdpm_tgate_gate7'))]] as const)('Playground runs reproduce diffusers + T-GATE (%s)', (backend, cases) => {
  beforeAll(async () => {
    await pipes.release();
    await useBackend(backend);
  });
  test.each(cases.map((c) => [c.file, c] as const))('%s', async (_f, c) => {
    const p = await pipeline();
    const r = await replay(p, c);
    // The schedule diffusers ran: sigmas (Karras, final 0) and init_noise_sigma = √(80² + 1).
    const s = c.scheduler ? null : p.scheduler;
    if (s) {
      s.setTimesteps(10);
      const want = Array.from(r.g.sigmas.dataSync());
      s.sigmas!.forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, want[i])));
      expect(Math.abs(s.initNoiseSigma - r.g.init_noise_sigma.dataSync()[0])).toBeLessThanOrEqual(1e-5);
      s.reset();
    }
    expectReplay(`${backend} ${c.file}`, r);
  }, 300_000);
});

test('the decode input is latents·std/scaling_factor + mean, bit for bit', async () => {
  await useBackend('wasm');
  const p = await pipeline();
  for (const c of CASES) {
    const g = await loadFixture(`${c.file}.safetensors`);
    const ours = vaeDecodeInput(p.vae, g.final_latents);
    expect(relL2T(ours, g.vae_decode_input)).toBe(0);
    ours.dispose();
    Object.values(g).forEach((t) => t.dispose());
  }
}, 60_000);
