/**
 * One generation, the part every pipeline shares: TGATE and DeepCache installed for this call only,
 * tensors the pipeline makes for conditioning freed at the end, timesteps and initial latents prepared,
 * the denoising loop run, the result decoded. A pipeline supplies only its conditioning.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import type { Scheduler } from '../samplers/index.js';
import { Rng } from '../samplers/rng.js';
import { TorchGenerator } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import { UNet2DConditionModel, type UNetForwardOptions } from '../models/unet-2d-condition.js';
import type { TgateOptions } from '../attention/tgate.js';
import { denoiseLoop, type DenoiseArgs, type StepInfo } from './denoise.js';
import { beginTgate } from '../attention/tgate-session.js';
import { DeepCache, type DeepCacheOptions } from './deepcache.js';
import { decodeLatents, prepareLatents, toRGBImages } from './latents.js';
import type { RGBImage } from '../io/png.js';

/** Options shared by every pipeline's `generate` (diffusers `__call__` arguments in camelCase). */
export interface GenerateOptionsBase {
  prompt?: string;
  negativePrompt?: string;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  guidanceRescale?: number;
  /** Initial latents, NCHW, unscaled (the pipeline multiplies by the scheduler's initNoiseSigma). */
  latents?: tf.Tensor;
  /**
   * Seed of the noise generator (random when omitted). With `rng` 'torch' (the default) it draws exactly what
   * `torch.Generator().manual_seed(seed)` gives diffusers: the same seed, the same initial latents.
   */
  seed?: number;
  /** 'torch' (default): torch-compatible mt19937 stream; 'pcg': our own PCG32 stream. */
  rng?: 'torch' | 'pcg';
  eta?: number;
  outputType?: 'latent' | 'image';
  tgate?: TgateOptions | null;
  /** DeepCache (UNet pipelines only), composable with TGATE. */
  deepcache?: DeepCacheOptions | null;
  /** Recorded scheduler noise per step (replays a diffusers run). */
  stepNoise?: (step: number) => tf.Tensor | undefined;
  /** Progress: called after every step; the tensors in `info` are only valid during the call. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export interface GenerateResult {
  /** Final latents, NCHW (caller disposes). */
  latents: tf.Tensor;
  /** Decoded RGB images (empty with outputType 'latent'). */
  images: RGBImage[];
}

/** Registers a tensor to free when the generation ends, and returns it. */
export type Own = <T extends tf.Tensor>(t: T) => T;

export interface SessionSpec {
  scheduler: Scheduler;
  vae: AutoencoderKL;
  /** The model TGATE attaches to (UNet or PixArt transformer). */
  denoiser: Module;
  latentShape: [number, number, number, number];
  steps: number;
  guidance: number;
  doCfg: boolean;
  /**
   * Builds the conditioning (register its tensors with `own`) and returns the denoiser call; UNet pipelines
   * run the UNet through `unet`, which applies DeepCache when it is on.
   */
  condition(own: Own, unet: (args: UNetForwardOptions) => tf.Tensor): DenoiseArgs['denoise'];
}

export async function runGeneration(o: GenerateOptionsBase, s: SessionSpec): Promise<GenerateResult> {
  if (o.deepcache && !(s.denoiser instanceof UNet2DConditionModel)) throw new Error('deepcache works with UNet pipelines only');
  const tg = beginTgate(s.denoiser, o.tgate, s.steps, s.doCfg);
  const owned: tf.Tensor[] = [];
  let dc: DeepCache | null = null;
  try {
    if (o.deepcache) dc = new DeepCache(s.denoiser as UNet2DConditionModel, o.deepcache, tg.settings?.gateStep);
    const own: Own = (t) => { owned.push(t); return t; };
    const unet = (args: UNetForwardOptions) => (dc ? dc.forward(args) : (s.denoiser as UNet2DConditionModel).forward(args));
    const denoise = s.condition(own, unet);
    s.scheduler.setTimesteps(s.steps);
    // One stream for the initial latents and then the samplers' noise, as diffusers passes one generator.
    const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
    const generator = o.rng === 'pcg' ? new Rng(seed) : new TorchGenerator(seed);
    const latents = prepareLatents(s.latentShape, s.scheduler.initNoiseSigma, o.latents, generator);
    const final = await denoiseLoop({
      scheduler: s.scheduler, latents, numInferenceSteps: s.steps, guidanceScale: s.guidance, doCfg: s.doCfg,
      guidanceRescale: o.guidanceRescale, tgate: tg.settings, eta: o.eta, stepNoise: o.stepNoise, onStep: o.onStep,
      generator, beforeStep: dc ? (i) => dc!.beforeStep(i) : undefined, denoise,
    });
    if (o.outputType === 'latent') return { latents: final, images: [] };
    try {
      const img = decodeLatents(s.vae, final);
      try {
        return { latents: final, images: await toRGBImages(img) };
      } finally {
        img.dispose();
      }
    } catch (e) {
      final.dispose();
      throw e;
    }
  } finally {
    owned.forEach((t) => t.dispose());
    dc?.dispose();
    tg.end();
  }
}
