/**
 * Where a generation starts: the latents entering the first step and the index of that step, for
 * text-to-image (noise) and img2img (the encoded image noised to the first timestep that runs). Every random
 * draw comes from the one generator in diffusers' order, so a seed reproduces diffusers' run.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Scheduler } from '../samplers/index.js';
import type { NoiseSource } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import { tileToBatch } from './batch.js';
import { prepareLatents, vaeEncodeOutput } from './latents.js';

/** The start of a denoising run (its tensors are the caller's to free with `dispose`, `latents` excepted). */
export interface Start {
  /** Latents entering the first step, already scaled; the denoising loop takes them over. */
  latents: tf.Tensor;
  /** Index in `scheduler.timesteps` of the first step that runs. */
  begin: number;
  /** Channels appended to the scaled latents of each row (the inpainting UNet's mask and masked-image latents). */
  extraChannels?: tf.Tensor;
  /** Called after step `i` (4-channel inpainting's blend); returns the latents to go on with (a new tensor or its input). */
  afterStep?: (i: number, latents: tf.Tensor) => tf.Tensor;
  dispose(): void;
}

/**
 * The strength an img2img or inpainting call runs at when none is given, as diffusers' pipelines default it:
 * 1 for inpainting, 0.3 for SDXL's plain img2img, 0.8 otherwise (SD, PixArt, and SDXL with a ControlNet).
 */
export function defaultStrength(o: { sdxl: boolean; inpaint: boolean; control: boolean }): number {
  if (o.inpaint) return 1;
  return o.sdxl && !o.control ? 0.3 : 0.8;
}

/**
 * diffusers `get_timesteps`: img2img runs the last init_timestep = min(⌊N·strength⌋, N) of the N steps, starting at
 * index N − init_timestep. Every sampler here has `order` 1, as in diffusers v0.30.3.
 */
export function strengthSteps(numInferenceSteps: number, strength: number): { begin: number; run: number } {
  if (typeof strength !== 'number' || !(strength >= 0 && strength <= 1)) throw new Error(`strength must be a number in [0, 1], got ${strength}`);
  const run = Math.min(Math.floor(numInferenceSteps * strength), numInferenceSteps);
  if (run < 1) {
    throw new Error(`strength ${strength} × ${numInferenceSteps} steps leaves no step to run (⌊${numInferenceSteps}·${strength}⌋ = 0): raise strength or numInferenceSteps`);
  }
  return { begin: numInferenceSteps - run, run };
}

/**
 * VAE latents of an image in [-1, 1]: one sample of the latent distribution (mean + std · randn, the draw taken
 * from `generator`), scaled as the pipeline's decode expects (`vaeEncodeOutput`, the inverse of `vaeDecodeInput`).
 */
export function encodeLatents(vae: AutoencoderKL, image: tf.Tensor, generator: NoiseSource): tf.Tensor {
  const dist = vae.encode(image);
  try {
    return tf.tidy(() => vaeEncodeOutput(vae, dist.sample(generator.randn(dist.mean.shape))));
  } finally {
    dist.dispose();
  }
}

/** Text-to-image: the user's latents or noise from `generator`, times the sampler's initNoiseSigma. */
export function textToImageStart(shape: [number, number, number, number], scheduler: Scheduler, latents: tf.Tensor | undefined, generator: NoiseSource): Start {
  return { latents: prepareLatents(shape, scheduler.initNoiseSigma, latents, generator), begin: 0, dispose: () => {} };
}

export interface ImageToImageArgs {
  vae: AutoencoderKL;
  scheduler: Scheduler;
  /** [b, 3, H, W] in [-1, 1]; b divides the batch. */
  image: tf.Tensor;
  shape: [number, number, number, number];
  begin: number;
  /** diffusers' SD img2img calls `scheduler.set_begin_index(t_start)`; its SDXL img2img does not. */
  setBeginIndex: boolean;
  generator: NoiseSource;
}

/**
 * img2img (diffusers `prepare_latents`): encode the image (draw 1), tile its latents to the batch, draw the noise
 * (draw 2) and noise the latents to the first timestep that runs. Call after `scheduler.setTimesteps`.
 */
export function imageToImageStart(a: ImageToImageArgs): Start {
  const s = a.scheduler;
  if (a.setBeginIndex) s.setBeginIndex?.(a.begin);
  const init = encodeToBatch(a.vae, a.image, a.generator, a.shape, 'image');
  try {
    const latents = tf.tidy(() => s.addNoise(init, a.generator.randn(a.shape), s.timesteps[a.begin]));
    return { latents, begin: a.begin, dispose: () => {} };
  } finally {
    init.dispose();
  }
}

/** Image latents (encoded with one draw of `generator`) tiled to the batch and checked against the latent shape. */
export function encodeToBatch(vae: AutoencoderKL, image: tf.Tensor, generator: NoiseSource, shape: number[], what: string): tf.Tensor {
  const encoded = encodeLatents(vae, image, generator);
  try {
    const rows = tileToBatch(encoded, shape[0], what);
    if (rows.shape.join() !== shape.join()) {
      rows.dispose();
      throw new Error(`the encoded ${what} has latent shape [${encoded.shape}] but the generation needs [${shape}]`);
    }
    return rows;
  } finally {
    encoded.dispose();
  }
}
