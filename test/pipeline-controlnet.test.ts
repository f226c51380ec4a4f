/**
 * StableDiffusionControlNetPipeline as diffusers v0.30.3 runs it (ext2/controlnet/sd15_tiny_controlnet_ddim_baseline:
 * DDIM, 10 steps, guidance 7.5, conditioning scale 0.8, control guidance 0.0 → 0.8): per-step latents, UNet outputs,
 * the step-0 residuals and the conditioning scale of every step, on wasm and cpu. Then what has no recorded run,
 * checked against what it must equal: the option checks, diffusers' repeat rules for the control image (a batch
 * equals its rows run alone), several ControlNets (their residuals summed), pipeline folders with a `controlnet`
 * component, a converted ControlNet over HTTP, img2img and SDXL (scale 0 equals the pipeline without ControlNet).
 */
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { startServer } from './support/http-server.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { controlnetKeep } from '../src/pipelines/controlnet-step.js';
import { modelFromConfig } from '../src/models/registry.js';
import { controlnetConfigFromUnet } from '../src/models/controlnet-config.js';
import { convertComponent } from '../src/convert/convert.js';
import type { StableDiffusionPipeline, SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';
import type { StableDiffusionXLPipeline, SDXLGenerateOptions } from '../src/pipelines/stable-diffusion-xl.js';
import type { ControlNetForwardOptions, ControlNetModel, ControlNetOutput } from '../src/models/controlnet.js';

const CN = fixture('ext2/models/sd15_tiny_controlnet');
const SD = fixture('pipelines/sd15_tiny');
const index = readPythonJson<{ sd15_tiny_controlnet_ddim: { controlnet_keep: number[]; cond_scale_per_step: number[]; scheduler: { config_passed: Record<string, unknown> } } }>(
  fixture('ext2/controlnet/index.json')).sd15_tiny_controlnet_ddim;

const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

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

/** Bytes of two tensors are identical. */
const same = (a: tf.Tensor, b: tf.Tensor) => Buffer.compare(Buffer.from(a.dataSync().buffer), Buffer.from(b.dataSync().buffer)) === 0;

describe('ControlNet pipelines: options, batches, several ControlNets, folders, img2img, SDXL (wasm)', () => {
  let pipe: StableDiffusionPipeline;
  let cn: ControlNetModel;
  let g: Record<string, tf.Tensor>;
  beforeAll(async () => {
    await useBackend('wasm');
    pipe = await loadPipeline(SD, { controlnet: CN }) as StableDiffusionPipeline;
    pipe.scheduler.dispose();
    pipe.scheduler = schedulerFromConfig(index.scheduler.config_passed, 'DDIMScheduler');
    cn = pipe.controlnets[0];
    g = await loadFixture('ext2/controlnet/sd15_tiny_controlnet_ddim_baseline.safetensors');
  });
  afterAll(() => { pipe.controlnets = [cn]; pipe.dispose(); tf.dispose(Object.values(g)); });

  const base = (): SDGenerateOptions => ({
    promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], controlImage: g['in.image'],
    latents: g['in.latents'], numInferenceSteps: 4, guidanceScale: 7.5, outputType: 'latent',
  });
  const latentsOf = async (p: StableDiffusionPipeline, o: SDGenerateOptions) => (await p.generate(o)).latents;

  test('options are checked before any work; errors name the option', async () => {
    const before = tf.memory().numTensors;
    const img = g['in.image'];
    const wrongSize = tf.zeros([1, 3, 64, 96]);
    const three = tf.zeros([3, 3, 96, 96]);
    const bad: [Partial<SDGenerateOptions> & Record<string, unknown>, RegExp | string][] = [
      [{ controlImage: undefined }, 'this pipeline has a ControlNet: pass controlImage (or detach them: pipe.controlnets = [])'],
      [{ controlImage: wrongSize, height: 96, width: 96 }, 'controlImage is 96×64 but the image generated is 96×96: resize it (nothing is resized here)'],
      [{ controlImage: three }, 'controlImage has 3 images: give 1, or one per prompt (1)'],
      [{ controlGuidanceStart: 0.5, controlGuidanceEnd: 0.5 }, 'controlGuidanceStart 0.5 and controlGuidanceEnd 0.5 must satisfy 0 ≤ start < end ≤ 1'],
      [{ controlGuidanceEnd: 1.5 }, /must satisfy 0 ≤ start < end ≤ 1/],
      [{ controlnetConditioningScale: [0.5, 0.5] }, 'controlnetConditioningScale must be a finite number or a list of 1 (one per ControlNet), got [0.5,0.5]'],
      [{ controlnetConditioningScale: Number.NaN }, /controlnetConditioningScale must be a finite number/],
      [{ guessMode: 1 as unknown as boolean }, 'guessMode must be true or false, got 1'],
      [{ control_image: img }, 'StableDiffusionPipeline.generate: unknown option "control_image" (did you mean controlImage?)'],
      [{ controlImage: tf.mul(img, 2) }, /controlImage values must be in \[0, 1\], got min 0\.\d+, max 1\.\d+/],
      [{ image: img, maskImage: tf.ones([1, 1, 96, 96]), latents: undefined }, /inpainting with a ControlNet .* is not supported/],
    ];
    for (const [extra, err] of bad) await expect(pipe.generate({ ...base(), ...extra })).rejects.toThrow(err);
    pipe.controlnets = [cn, cn];
    await expect(pipe.generate(base())).rejects.toThrow('controlImage: this pipeline has 2 ControlNets: give a list of 2 images (one per ControlNet, in order)');
    await expect(pipe.generate({ ...base(), controlImage: [img, img], controlGuidanceEnd: [1] })).rejects.toThrow(/controlGuidanceEnd must be a finite number or a list of 2/);
    // A ControlNet whose conditioning embedding downsamples 4× where the VAE does 8×.
    const shallow = modelFromConfig({ ...readJson(path.join(CN, 'config.json')), conditioning_embedding_out_channels: [16, 32, 96] }) as ControlNetModel;
    pipe.controlnets = [shallow];
    await expect(pipe.generate(base())).rejects.toThrow('controlnet 0 brings a 96×96 image to 24×24 but the latents are 12×12: its conditioning embedding and the VAE scale differently');
    shallow.dispose();
    pipe.controlnets = [];
    await expect(pipe.generate(base())).rejects.toThrow('controlImage needs a ControlNet: loadPipeline(dir, { controlnet: dirOrModel })');
    pipe.controlnets = [cn];
    tf.dispose([wrongSize, three, ...bad.flatMap(([e]) => [e.maskImage, e.controlImage]).filter((t): t is tf.Tensor => t instanceof tf.Tensor && t !== img && t !== wrongSize && t !== three)]);
    expect(tf.memory().numTensors).toBe(before);
    // Loading: a folder that is not a ControlNet, a ControlNet that does not fit the UNet, a PixArt pipeline.
    await expect(loadPipeline(SD, { controlnet: fixture('pipelines/sd15_tiny/unet') })).rejects.toThrow(/controlnet 0: .*unet holds a UNet2DConditionModel, not a ControlNetModel/);
    const sdxlCn = modelFromConfig(controlnetConfigFromUnet(readJson(fixture('pipelines/sdxl_tiny/unet/config.json')))) as ControlNetModel;
    await expect(loadPipeline(SD, { controlnet: sdxlCn })).rejects.toThrow(/controlnet 0 does not fit this pipeline's UNet: its residuals/);
    await expect(loadPipeline(fixture('pipelines/pixart_tiny'), { controlnet: cn })).rejects.toThrow(/ControlNets attach to SD and SDXL pipelines/);
    sdxlCn.dispose();
  }, 120_000);

  test('the control image sets the size; a batch of one serves every row, a batch per prompt repeats per image', async () => {
    const embeds = tf.tidy(() => tf.concat([g['in.prompt_embeds'], tf.randomNormal([1, 77, 32], 0, 1, 'float32', 3)]));
    const neg = tf.tidy(() => tf.concat([g['in.negative_prompt_embeds'], g['in.negative_prompt_embeds']]));
    const lat = tf.tidy(() => tf.randomNormal([4, 4, 12, 12], 0, 1, 'float32', 4));
    const images = tf.tidy(() => tf.concat([g['in.image'], tf.randomUniform([1, 3, 96, 96], 0, 1, 'float32', 5)]));
    const before = tf.memory().numTensors;
    for (const [what, controlImage] of [['one image per prompt', images], ['one image for all', g['in.image']]] as const) {
      const both = await latentsOf(pipe, { ...base(), promptEmbeds: embeds, negativePromptEmbeds: neg, numImagesPerPrompt: 2, latents: lat, controlImage });
      for (let r = 0; r < 4; r++) {
        const p = Math.floor(r / 2);
        const row = (t: tf.Tensor, i: number) => tf.slice(t, i, 1);
        const [e, n, l, c] = [row(embeds, p), row(neg, p), row(lat, r), row(controlImage, controlImage.shape[0] === 1 ? 0 : p)];
        const alone = await latentsOf(pipe, { ...base(), promptEmbeds: e, negativePromptEmbeds: n, latents: l, controlImage: c });
        const got = row(both, r);
        const err = relL2T(got, alone);
        console.log(`${what}: batch row ${r} vs alone rel-L2 ${err.toExponential(2)}`);
        expect(err).toBeLessThanOrEqual(1e-5);
        tf.dispose([e, n, l, c, alone, got]);
      }
      both.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([embeds, neg, lat, images]);
  }, 300_000);

  test('several ControlNets: residuals summed, each with its scale and guidance window', async () => {
    const img = g['in.image'];
    const single = await latentsOf(pipe, { ...base(), controlnetConditioningScale: 0.8 });
    pipe.controlnets = [cn, cn];
    try {
      const zeroFirst = await latentsOf(pipe, { ...base(), controlImage: [img, img], controlnetConditioningScale: [0, 0.8] });
      expect(same(zeroFirst, single)).toBe(true);
      const split = await latentsOf(pipe, { ...base(), controlImage: [img, img], controlnetConditioningScale: [0.3, 0.5] });
      const e = relL2T(split, single);
      console.log(`two ControlNets at 0.3 + 0.5 vs one at 0.8: rel-L2 ${e.toExponential(2)}`);
      expect(e).toBeLessThanOrEqual(1e-5);
      const s = spy(cn);
      const windows = await latentsOf(pipe, { ...base(), controlImage: [img, img], controlnetConditioningScale: 0.5, controlGuidanceStart: [0, 0.5], controlGuidanceEnd: [0.5, 1] });
      s.restore();
      tf.dispose([zeroFirst, split, windows, ...s.first]);
      // Calls alternate net 0, net 1 at each of the 4 steps.
      expect(s.scales).toEqual([0.5, 0, 0.5, 0, 0, 0.5, 0, 0.5]);
    } finally {
      pipe.controlnets = [cn];
      single.dispose();
    }
  }, 120_000);

  test('a StableDiffusionControlNetPipeline folder (and a MultiControlNetModel one) loads as the option does', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'tgate-cn-pipe-'));
    try {
      for (const multi of [false, true]) {
        const dir = path.join(tmp, multi ? 'multi' : 'single');
        await mkdir(dir);
        const idx = JSON.parse(await readFile(path.join(SD, 'model_index.json'), 'utf8')) as Record<string, unknown>;
        idx._class_name = 'StableDiffusionControlNetPipeline';
        idx.controlnet = ['diffusers', multi ? 'MultiControlNetModel' : 'ControlNetModel'];
        await writeFile(path.join(dir, 'model_index.json'), JSON.stringify(idx));
        for (const c of ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) await symlink(path.join(SD, c), path.join(dir, c));
        await symlink(CN, path.join(dir, 'controlnet'));
        if (multi) await symlink(CN, path.join(dir, 'controlnet_1'));
        const p = await loadPipeline(dir) as StableDiffusionPipeline;
        expect(p.controlnets).toHaveLength(multi ? 2 : 1);
        p.scheduler.dispose();
        p.scheduler = schedulerFromConfig(index.scheduler.config_passed, 'DDIMScheduler');
        const o = { ...base(), controlImage: multi ? [g['in.image'], g['in.image']] : g['in.image'], controlnetConditioningScale: multi ? [0, 0.8] : 0.8 };
        const got = await latentsOf(p, o);
        const want = await latentsOf(pipe, { ...base(), controlnetConditioningScale: 0.8 });
        expect(same(got, want)).toBe(true);
        tf.dispose([got, want]);
        p.dispose();
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 120_000);

  test('a converted ControlNet folder loads over HTTP and generates what the local one does', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'tgate-cn-http-'));
    const server = await startServer(tmp);
    try {
      await convertComponent(CN, path.join(tmp, 'controlnet'));
      const p = await loadPipeline(SD, { controlnet: `${server.url}controlnet` }) as StableDiffusionPipeline;
      expect(server.hits.some((h) => h.includes('controlnet/model.json'))).toBe(true);
      p.scheduler.dispose();
      p.scheduler = schedulerFromConfig(index.scheduler.config_passed, 'DDIMScheduler');
      const got = await latentsOf(p, base());
      const want = await latentsOf(pipe, base());
      expect(same(got, want)).toBe(true);
      tf.dispose([got, want]);
      p.dispose();
    } finally {
      await server.close();
      await rm(tmp, { recursive: true, force: true });
    }
  }, 120_000);

  test('img2img with a ControlNet (StableDiffusionControlNetImg2ImgPipeline): conditioning scale 0.8 by default, scale 0 is plain img2img', async () => {
    const image = tf.tidy(() => tf.randomUniform([1, 3, 96, 96], 0, 1, 'float32', 8));
    const call = { ...base(), latents: undefined, image, strength: 0.6, seed: 4 };
    const s = spy(cn);
    const controlled = await latentsOf(pipe, call);
    s.restore();
    expect(s.scales).toEqual([0.8, 0.8]); // 2 of 4 steps run (strength 0.6)
    const zero = await latentsOf(pipe, { ...call, controlnetConditioningScale: 0 });
    pipe.controlnets = [];
    const plain = await latentsOf(pipe, { ...call, controlImage: undefined });
    pipe.controlnets = [cn];
    expect(same(zero, plain)).toBe(true);
    expect(relL2T(controlled, plain)).toBeGreaterThan(1e-3);
    tf.dispose([image, controlled, zero, plain, ...s.first]);
  }, 120_000);
});

describe('SDXL with a ControlNet (StableDiffusionXLControlNet(Img2Img)Pipeline; wasm)', () => {
  let xl: StableDiffusionXLPipeline;
  let cn: ControlNetModel;
  beforeAll(async () => {
    await useBackend('wasm');
    cn = modelFromConfig(controlnetConfigFromUnet(readJson(fixture('pipelines/sdxl_tiny/unet/config.json')))) as ControlNetModel;
    cn.initRandom(7, 0.05);
    xl = await loadPipeline(fixture('pipelines/sdxl_tiny'), { controlnet: cn }) as StableDiffusionXLPipeline;
  });
  afterAll(() => xl.dispose());

  const call = (): SDXLGenerateOptions => ({
    prompt: 'a red square', negativePrompt: 'blurry', numInferenceSteps: 4, guidanceScale: 5, seed: 2, outputType: 'latent',
    controlImage: tf.tidy(() => tf.randomUniform([1, 3, 64, 64], 0, 1, 'float32', 9)),
  });

  test('the text-time conditioning reaches the ControlNet; scale 0 is plain SDXL; guess mode and TGATE run the conditional half, then the single branch', async () => {
    const o = call();
    const before = tf.memory().numTensors;
    const controlled = (await xl.generate(o)).latents;
    const zero = (await xl.generate({ ...o, controlnetConditioningScale: 0 })).latents;
    xl.controlnets = [];
    const plain = (await xl.generate({ ...o, controlImage: undefined, height: 64, width: 64 })).latents;
    xl.controlnets = [cn];
    expect(same(zero, plain)).toBe(true);
    expect(relL2T(controlled, plain)).toBeGreaterThan(1e-3);
    const s = spy(cn);
    const batches: number[] = [];
    const forward = cn.forward.bind(cn);
    const seen: number[] = [];
    cn.forward = (x: ControlNetForwardOptions) => { seen.push(x.sample.shape[0], x.textEmbeds!.shape[0], x.timeIds!.shape[0]); return forward(x); };
    const gated = (await xl.generate({ ...o, guessMode: true, tgate: { gateStep: 2, spInterval: 1, warmUp: 0 }, onStep: (st) => { batches.push(st.batch); } })).latents;
    delete (cn as Partial<ControlNetModel>).forward;
    s.restore();
    expect(batches).toEqual([2, 2, 1, 1]);
    expect(seen).toEqual(new Array(12).fill(1));
    tf.dispose([controlled, zero, plain, gated, ...s.first]);
    expect(tf.memory().numTensors).toBe(before);
    (o.controlImage as tf.Tensor).dispose();
  }, 300_000);

  test('img2img: strength 0.8 by default (diffusers\' SDXL ControlNet img2img), scale 0 equals SDXL img2img at that strength', async () => {
    const o = call();
    const image = tf.tidy(() => tf.randomUniform([1, 3, 64, 64], 0, 1, 'float32', 10));
    const steps: number[] = [];
    const zero = (await xl.generate({ ...o, image, controlnetConditioningScale: 0, onStep: (st) => { steps.push(st.step); } })).latents;
    expect(steps).toHaveLength(3); // ⌊4 · 0.8⌋
    xl.controlnets = [];
    const plain = (await xl.generate({ ...o, image, controlImage: undefined, strength: 0.8 })).latents;
    xl.controlnets = [cn];
    const e = relL2T(zero, plain);
    console.log(`SDXL ControlNet img2img at scale 0 vs SDXL img2img: rel-L2 ${e.toExponential(2)}`);
    expect(e).toBe(0);
    tf.dispose([zero, plain, image, o.controlImage as tf.Tensor]);
  }, 300_000);
});
