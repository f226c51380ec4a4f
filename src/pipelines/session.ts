/**
 * One generation, the part every pipeline and every mode (text-to-image, img2img, inpainting) shares: TGATE
 * and DeepCache installed for this call only, tensors the pipeline makes for conditioning freed at the end,
 * the start latents prepared (one generator, diffusers' draw order), the denoising loop run, the result
 * decoded. A pipeline supplies only its conditioning.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import type { Scheduler } from '../samplers/index.js';
import { Rng } from '../samplers/rng.js';
import { TorchGenerator, type NoiseSource } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import { UNet2DConditionModel, type UNetForwardOptions } from '../models/unet-2d-condition.js';
import type { TgateOptions } from '../attention/tgate.js';
import { denoiseLoop, type DenoiseArgs, type GenerationProgress, type StepInfo } from './denoise.js';
import { beginTgate, type TgateSession } from '../attention/tgate-session.js';
import { DeepCache, type DeepCacheOptions } from './deepcache.js';
import { decodeImages } from './latents.js';
import { imageToImageStart, strengthSteps, textToImageStart, type Start } from './start.js';
import { inpaintStart } from './inpaint.js';
import { imageShape, preprocessImage, preprocessMask, type ImageInput } from './images.js';
import type { RGBImage } from '../io/png.js';
import { lockModels } from '../nn/model-lock.js';
import { abortedBeforeStart, generationMemoryError, stopAtProgress } from './call-guard.js';
import { ControlStep, type ControlNetPlan } from './controlnet-step.js';

/** Options shared by every pipeline's `generate` (diffusers `__call__` arguments in camelCase). */
export interface GenerateOptionsBase {
  /** One prompt or a batch of prompts. */
  prompt?: string | string[];
  /** One negative prompt for every prompt, or one per prompt. */
  negativePrompt?: string | string[];
  /** Images per prompt (default 1); the batch is [prompt 0's images…, prompt 1's images…, …]. */
  numImagesPerPrompt?: number;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  guidanceRescale?: number;
  /** Initial latents, NCHW [prompts × numImagesPerPrompt, C, h, w], unscaled (the pipeline multiplies by initNoiseSigma). */
  latents?: tf.Tensor;
  /**
   * Seed of the noise generator (random when omitted). With `rng` 'torch' (the default) it draws exactly what
   * `torch.Generator().manual_seed(seed)` gives diffusers: the same seed, the same initial latents.
   */
  seed?: number;
  /** A generator to draw from instead of a seeded one (diffusers' `generator`; e.g. a `TorchGenerator` reused across calls). */
  generator?: NoiseSource;
  /** 'torch' (default): torch-compatible mt19937 stream; 'pcg': our own PCG32 stream. */
  rng?: 'torch' | 'pcg';
  eta?: number;
  outputType?: 'latent' | 'image';
  tgate?: TgateOptions | null;
  /** DeepCache (UNet pipelines only), composable with TGATE. */
  deepcache?: DeepCacheOptions | null;
  /**
   * img2img / inpainting: the starting image, RGB bytes or an NCHW tensor [B, 3, H, W] in [0, 1]; B divides the
   * batch. Its size sets height and width.
   */
  image?: ImageInput;
  /**
   * How much of the schedule runs from the image: the last min(⌊numInferenceSteps·strength⌋, numInferenceSteps)
   * steps. Defaults as diffusers: 0.8 (SD, PixArt), 0.3 (SDXL), 1 (inpainting).
   */
  strength?: number;
  /** Recorded scheduler noise per step (replays a diffusers run). */
  stepNoise?: (step: number) => tf.Tensor | undefined;
  /** Called after every step; the tensors in `info` are only valid during the call. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Progress through the denoising steps and then the VAE decoding of each image. */
  onProgress?: (p: GenerationProgress) => void | Promise<void>;
  /**
   * Stops the generation: it then rejects with an `AbortError` (`error.name === 'AbortError'`), having freed
   * every tensor it made and restored the denoiser's attention processors; the pipeline stays usable. Checked
   * before any work, while the call waits for another on the same model, after each denoising step, before the
   * VAE decode and after each decoded image (the progress points). An error thrown from `onStep` or
   * `onProgress` stops the run the same way, rejecting with that error.
   */
  signal?: AbortSignal;
}

/** Every key of GenerateOptionsBase (the compiler keeps this list complete). */
export const BASE_OPTION_KEYS = Object.keys({
  prompt: 1, negativePrompt: 1, numImagesPerPrompt: 1, height: 1, width: 1, numInferenceSteps: 1, guidanceScale: 1, guidanceRescale: 1,
  latents: 1, seed: 1, generator: 1, rng: 1, eta: 1, outputType: 1, tgate: 1, deepcache: 1, image: 1, strength: 1, stepNoise: 1,
  onStep: 1, onProgress: 1, signal: 1,
} satisfies Record<keyof GenerateOptionsBase, 1>);

export interface GenerateResult {
  /** Final latents, NCHW (caller disposes). */
  latents: tf.Tensor;
  /** Decoded RGB images, one per batch row (empty with outputType 'latent'). */
  images: RGBImage[];
  /** The seed the noise came from (the one given, or the random one picked), null when `generator` was given. */
  seed: number | null;
}

/** Registers a tensor to free when the generation ends, and returns it. */
export type Own = <T extends tf.Tensor>(t: T) => T;

export interface SessionSpec {
  scheduler: Scheduler;
  vae: AutoencoderKL;
  /** The model TGATE attaches to (UNet or PixArt transformer). */
  denoiser: Module;
  /** [prompts × images per prompt, latent channels, h, w]. */
  latentShape: [number, number, number, number];
  steps: number;
  guidance: number;
  doCfg: boolean;
  /** diffusers' default strength for this pipeline and mode. */
  defaultStrength: number;
  /** Whether the pipeline calls `scheduler.setBeginIndex` for img2img (diffusers SD: yes, SDXL: no). */
  setsBeginIndex: boolean;
  /** Inpainting with `maskImage` (SD only); `maskedInput`: the UNet takes mask and masked-image latents too. */
  inpaint?: { maskImage: ImageInput; maskedInput: boolean };
  /** The call's ControlNets (checked by `planControl`): TGATE is installed on them too. */
  control?: ControlNetPlan | null;
  /**
   * Builds the conditioning (register its tensors with `own`) and returns the denoiser call; UNet pipelines
   * run the UNet through `unet`, which applies DeepCache when it is on, and add `control`'s residuals.
   */
  condition(own: Own, unet: (args: UNetForwardOptions) => tf.Tensor, control: ControlStep | null): DenoiseArgs['denoise'];
}

/** Checks what the start needs before any work: image/mask forms and batches, strength, the steps that run. */
function planStart(o: GenerateOptionsBase, s: SessionSpec): { begin: number; run: number; strength?: number } {
  const [m] = s.latentShape;
  if (o.seed !== undefined && o.generator) throw new Error('give seed or generator, not both');
  if (o.generator && typeof o.generator.randn !== 'function') throw new Error('generator must have a randn(shape) method (e.g. a TorchGenerator)');
  if (o.image === undefined) {
    if (s.inpaint) throw new Error('maskImage needs image (the picture to inpaint)');
    if (o.strength !== undefined) throw new Error('strength needs image (img2img)');
    return { begin: 0, run: s.steps };
  }
  if (o.latents) throw new Error('latents cannot be combined with image: img2img and inpainting draw their noise from seed/generator');
  const img = imageShape(o.image, 'image');
  if (m % img.batch !== 0) throw new Error(`image has ${img.batch} images, which does not divide the ${m} images generated (prompts × numImagesPerPrompt)`);
  if (s.inpaint) {
    const mask = imageShape(s.inpaint.maskImage, 'maskImage', 1);
    if (mask.height !== img.height || mask.width !== img.width) throw new Error(`maskImage is ${mask.width}×${mask.height} but image is ${img.width}×${img.height}`);
    if (mask.batch !== img.batch && mask.batch !== 1 && img.batch !== 1) throw new Error(`maskImage has ${mask.batch} masks for ${img.batch} images (give one, or one per image)`);
    if (m % mask.batch !== 0) throw new Error(`maskImage has ${mask.batch} masks, which does not divide the ${m} images generated`);
  }
  const strength = o.strength ?? s.defaultStrength;
  return { ...strengthSteps(s.steps, strength), strength };
}

/** TGATE for the steps that run; the gate counts them (img2img and inpainting run fewer than numInferenceSteps). */
function tgateFor(o: GenerateOptionsBase, s: SessionSpec, plan: { run: number; strength?: number }): TgateSession {
  const g = o.tgate?.gateStep;
  if (plan.run < s.steps && typeof g === 'number' && g > plan.run) {
    throw new Error(`tgate.gateStep ${g} is beyond the ${plan.run} steps that run (strength ${plan.strength} of ${s.steps} steps; the gate counts the steps that run: choose 1…${plan.run})`);
  }
  return beginTgate(s.denoiser, o.tgate, plan.run, s.doCfg, s.control?.nets);
}

/**
 * Runs one generation. Calls that share the denoiser, the scheduler or a ControlNet (one pipeline called twice,
 * pipelines built on one UNet or given one ControlNet) run one at a time, in the order they were made (`nn/model-lock.ts`): each installs its
 * processors on the denoiser and steps the scheduler for its whole run. `o.signal` ends a queued call at once
 * and a running one at its next progress point (`call-guard.ts`).
 */
export async function runGeneration(o: GenerateOptionsBase, s: SessionSpec): Promise<GenerateResult> {
  const plan = planStart(o, s);
  if (o.deepcache && !(s.denoiser instanceof UNet2DConditionModel)) throw new Error('deepcache works with UNet pipelines only');
  if (o.signal?.aborted) throw abortedBeforeStart(o.signal, false);
  const release = await lockModels([s.denoiser, s.scheduler, ...(s.control?.nets ?? [])], { signal: o.signal, abortError: () => abortedBeforeStart(o.signal, true) });
  try {
    if (o.signal?.aborted) throw abortedBeforeStart(o.signal, false);
    return await generateLocked(stopAtProgress(o), s, plan);
  } catch (e) {
    const [images, , h, w] = s.latentShape;
    const f = 2 ** (s.vae.config.blockOutChannels.length - 1);
    throw generationMemoryError(e, { images, height: h * f, width: w * f });
  } finally {
    release();
  }
}

async function generateLocked(o: GenerateOptionsBase, s: SessionSpec, plan: ReturnType<typeof planStart>): Promise<GenerateResult> {
  const owned: tf.Tensor[] = [];
  const own: Own = (t) => { owned.push(t); return t; };
  let tg: TgateSession | null = null;
  let dc: DeepCache | null = null;
  try {
    const image = o.image === undefined ? null : own(await preprocessImage(o.image));
    const mask = s.inpaint ? own(await preprocessMask(s.inpaint.maskImage)) : null;
    const control = s.control ? await ControlStep.prepare(s.control, s.latentShape[0], s.doCfg, own) : null;
    tg = tgateFor(o, s, plan);
    if (o.deepcache) dc = new DeepCache(s.denoiser as UNet2DConditionModel, o.deepcache, tg.settings?.gateStep);
    const unet = (args: UNetForwardOptions) => (dc ? dc.forward(args) : (s.denoiser as UNet2DConditionModel).forward(args));
    const denoise = s.condition(own, unet, control);
    s.scheduler.setTimesteps(s.steps);
    // One stream for the start latents and then the samplers' noise, as diffusers passes one generator.
    const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
    const generator = o.generator ?? (o.rng === 'pcg' ? new Rng(seed) : new TorchGenerator(seed));
    const common = { vae: s.vae, scheduler: s.scheduler, shape: s.latentShape, begin: plan.begin, generator };
    const start: Start = !image ? textToImageStart(s.latentShape, s.scheduler, o.latents, generator)
      : mask ? inpaintStart({ ...common, image, mask, strengthMax: plan.strength === 1, maskedInput: s.inpaint!.maskedInput })
        : imageToImageStart({ ...common, image, setBeginIndex: s.setsBeginIndex });
    let final: tf.Tensor;
    try {
      final = await denoiseLoop({
        scheduler: s.scheduler, latents: start.latents, begin: start.begin, numInferenceSteps: plan.run, guidanceScale: s.guidance,
        doCfg: s.doCfg, guidanceRescale: o.guidanceRescale, tgate: tg.settings, eta: o.eta, stepNoise: o.stepNoise, onStep: o.onStep,
        onProgress: o.onProgress, generator, beforeStep: dc ? (i, at) => dc!.beforeStep(i, at) : undefined, denoise,
        extraChannels: start.extraChannels, afterStep: start.afterStep,
      });
    } finally {
      start.dispose();
    }
    const used = o.generator ? null : seed;
    if (o.outputType === 'latent') return { latents: final, images: [], seed: used };
    try {
      return { latents: final, images: await decodeImages(s.vae, final, o.onProgress), seed: used };
    } catch (e) {
      final.dispose();
      throw e;
    }
  } finally {
    owned.forEach((t) => t.dispose());
    dc?.dispose();
    tg?.end();
  }
}
