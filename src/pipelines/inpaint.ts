/**
 * diffusers StableDiffusionInpaintPipeline's start: the mask on the latent grid, the masked image's latents and
 * the initial latents, drawn from the one generator in diffusers' order. A 9-channel (inpainting) UNet gets
 * [latents, mask, masked-image latents] as its input; a 4-channel UNet keeps the unmasked area by blending the
 * image latents, noised to the next timestep, back in after every step.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Scheduler } from '../samplers/index.js';
import type { NoiseSource } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import { tileToBatch } from './batch.js';
import { resizeNearest } from './images.js';
import { encodeToBatch, type Start } from './start.js';

export interface InpaintArgs {
  vae: AutoencoderKL;
  scheduler: Scheduler;
  /** [b, 3, H, W] in [-1, 1]. */
  image: tf.Tensor4D;
  /** [b', 1, H, W] of 0 and 1 (1 = repaint). */
  mask: tf.Tensor4D;
  shape: [number, number, number, number];
  begin: number;
  /** strength 1: the run starts from pure noise (diffusers' `is_strength_max`). */
  strengthMax: boolean;
  /** The UNet takes latents + mask + masked-image latents (9 channels for SD). */
  maskedInput: boolean;
  generator: NoiseSource;
}

/**
 * Generator order (diffusers v0.30.3): encode(image) when the image latents are needed (strength < 1 or a
 * 4-channel UNet), then the noise, then encode(masked image), which is drawn even when a 4-channel UNet never
 * uses it. Call after `scheduler.setTimesteps`; SD's inpainting pipeline calls `set_begin_index(t_start)`.
 */
export function inpaintStart(a: InpaintArgs): Start {
  const s = a.scheduler;
  const [m, , h, w] = a.shape;
  s.setBeginIndex?.(a.begin);
  const held: tf.Tensor[] = [];
  const hold = <T extends tf.Tensor>(t: T): T => { held.push(t); return t; };
  try {
    let imageLatents: tf.Tensor | null = null;
    if (!a.maskedInput || !a.strengthMax) {
      imageLatents = hold(encodeToBatch(a.vae, a.image, a.generator, a.shape, 'image'));
    }
    const noise = hold(a.generator.randn(a.shape));
    const latents = a.strengthMax
      ? tf.mul(noise, s.initNoiseSigma)
      : s.addNoise(imageLatents!, noise, s.timesteps[a.begin]);
    try {
      // diffusers: init_image * (mask_condition < 0.5), broadcast over channels (and a batch of 1).
      const masked = tf.tidy(() => tf.mul(a.image, tf.cast(tf.less(a.mask, 0.5), 'float32')));
      let maskedLatents: tf.Tensor;
      try {
        maskedLatents = hold(encodeToBatch(a.vae, masked, a.generator, a.shape, 'masked image'));
      } finally {
        masked.dispose();
      }
      const small = resizeNearest(a.mask, h, w);
      const mask = (() => { try { return hold(tileToBatch(small, m, 'maskImage')); } finally { small.dispose(); } })();
      const start: Start = { latents, begin: a.begin, dispose: () => held.forEach((t) => t.dispose()) };
      if (a.maskedInput) start.extraChannels = hold(tf.concat([mask, maskedLatents], 1));
      else start.afterStep = blend(s, imageLatents!, noise, mask, a.begin);
      return start;
    } catch (e) {
      latents.dispose();
      throw e;
    }
  } catch (e) {
    held.forEach((t) => t.dispose());
    throw e;
  }
}

/**
 * The 4-channel path: after step i the unmasked area takes the image latents noised to the next timestep that
 * runs (the clean latents after the last step): latents = (1 − mask)·proper + mask·latents.
 */
function blend(s: Scheduler, imageLatents: tf.Tensor, noise: tf.Tensor, mask: tf.Tensor, begin: number): Start['afterStep'] {
  return (i, latents) => tf.tidy(() => {
    const next = begin + i + 1;
    const proper = next < s.timesteps.length ? s.addNoise(imageLatents, noise, [s.timesteps[next]]) : imageLatents;
    return tf.add(tf.mul(tf.sub(1, mask), proper), tf.mul(mask, latents));
  });
}
