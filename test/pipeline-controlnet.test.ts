/**
 * StableDiffusionControlNetPipeline as diffusers v0.30.3 runs it (ext2/controlnet/sd15_tiny_controlnet_ddim_baseline:
 * DDIM, 10 steps, guidance 7.5, conditioning scale 0.8, control guidance 0.0 → 0.8): per-step latents, UNet outputs,
 * the step-0 residuals and the conditioning scale of every step, on wasm and cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { controlnetKeep } from '../src/pipelines/controlnet-step.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { ControlNetForwardOptions, ControlNetModel, ControlNetOutput } from '../src/models/controlnet.js';

const CN = fixture('ext2/models/sd15_tiny_controlnet');
const SD = fixture('pipelines/sd15_tiny');
const index = readPythonJson<{ sd15_tiny_controlnet_ddim: { controlnet_keep: number[]; cond_scale_per_step: number[]; scheduler: { config_passed: Record<string, unknown> } } }>(
  fixture('ext2/controlnet/index.json')).sd15_tiny_controlnet_ddim;

/** Calls through to the ControlNet, keeping the scale of every call and the residuals of the first. */
function spy(cn: ControlNetModel): { scales: number[]; first: tf.Tensor[]; restore(): void } {
  const s = { scales: [] as number[], first: [] as tf.Tensor[], restore: () => { delete (cn as Partial<ControlNetModel>).forward; } };
  const forward = cn.forward.bind(cn);
  cn.forward = (o: ControlNetForwardOptions): ControlNetOutput => {
    const out = forward(o);
    s.scales.push(o.conditioningScale ?? 1);
    if (s.first.length === 0) s.first = [...out.downBlockResSamples, out.midBlockResSample].map((t) => tf.keep(t.clone()));
    return out;
  };
  return s;
}

describe.each(['wasm', 'cpu'] as const)('StableDiffusionControlNetPipeline reproduces diffusers (%s)', (backend) => {
  let pipe: StableDiffusionPipeline;
  let g: Record<string, tf.Tensor>;
  beforeAll(async () => {
    await useBackend(backend);
    pipe = await loadPipeline(SD, { controlnet: CN }) as StableDiffusionPipeline;
    pipe.scheduler.dispose();
    pipe.scheduler = schedulerFromConfig(index.scheduler.config_passed, 'DDIMScheduler');
    g = await loadFixture('ext2/controlnet/sd15_tiny_controlnet_ddim_baseline.safetensors');
  });
  afterAll(() => { pipe.dispose(); tf.dispose(Object.values(g)); });

  test('per-step latents and UNet outputs, step-0 residuals, scale per step', async () => {
    expect(pipe.controlnets).toHaveLength(1);
    // The recorded schedule is diffusers' keep rule.
    expect(index.controlnet_keep).toEqual(Array.from({ length: 10 }, (_, i) => controlnetKeep(i, 10, 0, 0.8)));
    const s = spy(pipe.controlnets[0]);
    const steps = tf.unstack(g.step_latents);
    const errs: number[] = [];
    const outErrs: number[] = [];
    const before = tf.memory().numTensors;
    const { latents } = await pipe.generate({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], controlImage: g['in.image'],
      latents: g['in.latents'], numInferenceSteps: 10, guidanceScale: 7.5, height: 96, width: 96,
      controlnetConditioningScale: 0.8, controlGuidanceStart: 0, controlGuidanceEnd: 0.8, outputType: 'latent',
      onStep: ({ step, latents: l, modelOutput }) => {
        errs.push(relL2T(l, steps[step]));
        outErrs.push(relL2T(modelOutput, g[`unet_out.${step}`]));
      },
    });
    s.restore();
    const finalErr = relL2T(latents, g.final_latents);
    const names = [...Array.from({ length: 6 }, (_, k) => `step0.down_block_res_samples.${k}`), 'step0.mid_block_res_sample'];
    const resErrs = s.first.map((t, k) => relL2T(t, g[names[k]]));
    tf.dispose([latents, ...s.first]);
    expect(tf.memory().numTensors).toBe(before);
    console.log(`${backend} controlnet pipeline: worst step latents ${Math.max(...errs).toExponential(2)}, worst UNet output ${Math.max(...outErrs).toExponential(2)}, `
      + `final ${finalErr.toExponential(2)}, worst step-0 residual ${Math.max(...resErrs).toExponential(2)}`);
    expect(errs).toHaveLength(10);
    errs.forEach((e, i) => expect([i, e <= 1e-4]).toEqual([i, true]));
    outErrs.forEach((e, i) => expect([i, e <= 1e-4]).toEqual([i, true]));
    expect(finalErr).toBeLessThanOrEqual(1e-4);
    resErrs.forEach((e, k) => expect([names[k], e <= 1e-4]).toEqual([names[k], true]));
    expect(s.scales.map((v) => Math.fround(v))).toEqual(Array.from(g.controlnet_cond_scale_per_step.dataSync()));
    expect(s.scales.map((v) => Math.fround(v))).toEqual(index.cond_scale_per_step.map((v) => Math.fround(v)));
    tf.dispose(steps);
  }, 600_000);
});
