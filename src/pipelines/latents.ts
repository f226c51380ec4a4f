/** Latents in and out of a pipeline: the initial noise, VAE decoding, and the RGB bytes of the images. */
import * as tf from '@tensorflow/tfjs-core';
import type { NoiseSource } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { RGBImage } from '../io/png.js';
import type { GenerationProgress } from './denoise.js';

/** Initial latents: the user's (NCHW, unscaled, checked) or drawn from `generator`, times initNoiseSigma. */
export function prepareLatents(shape: [number, number, number, number], initNoiseSigma: number, latents: tf.Tensor | undefined, generator: NoiseSource): tf.Tensor {
  if (latents) {
    if (latents.shape.length !== 4 || latents.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`latents must have shape [${shape}] (NCHW), got [${latents.shape}]`);
    }
    return tf.mul(latents, initNoiseSigma);
  }
  return tf.tidy(() => tf.mul(generator.randn(shape), initNoiseSigma));
}

/**
 * What the VAE decodes: latents·latents_std/scaling_factor + latents_mean when the VAE config has them
 * (Playground v2.5; diffusers' SDXL pipeline and T-GATE's), else latents/scaling_factor.
 */
export function vaeDecodeInput(vae: AutoencoderKL, latents: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const c = vae.config;
    if (c.latentsMean && c.latentsStd) {
      const mean = tf.tensor(c.latentsMean, [1, c.latentsMean.length, 1, 1]);
      const std = tf.tensor(c.latentsStd, [1, c.latentsStd.length, 1, 1]);
      return tf.add(tf.div(tf.mul(latents, std), c.scalingFactor), mean);
    }
    return tf.div(latents, c.scalingFactor);
  });
}

/** Decodes latents with the VAE to [0,1] NCHW images (diffusers' postprocess, denormalised). */
export function decodeLatents(vae: AutoencoderKL, latents: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const x = vae.decode(vaeDecodeInput(vae, latents));
    return tf.clipByValue(tf.add(tf.div(x, 2), 0.5), 0, 1) as tf.Tensor4D;
  });
}

/**
 * Decodes a batch one image at a time (the VAE decoder is the memory peak of a generation), reporting each
 * image to `onProgress` as the 'decode' phase.
 */
export async function decodeImages(vae: AutoencoderKL, latents: tf.Tensor, onProgress?: (p: GenerationProgress) => void | Promise<void>): Promise<RGBImage[]> {
  const total = latents.shape[0];
  const images: RGBImage[] = [];
  await onProgress?.({ phase: 'decode', completed: 0, total });
  for (let i = 0; i < total; i++) {
    const img = tf.tidy(() => decodeLatents(vae, tf.slice(latents, i, 1)));
    try {
      images.push(...await toRGBImages(img));
    } finally {
      img.dispose();
    }
    await onProgress?.({ phase: 'decode', completed: i + 1, total });
  }
  return images;
}

/** [B,3,H,W] in [0,1] → RGB byte images (round(x·255), as diffusers' numpy_to_pil). */
export async function toRGBImages(images: tf.Tensor4D): Promise<RGBImage[]> {
  const [b, , h, w] = images.shape;
  const bytes = tf.tidy(() => tf.round(tf.mul(images.transpose([0, 2, 3, 1]), 255)));
  const data = await bytes.data();
  bytes.dispose();
  const out: RGBImage[] = [];
  for (let i = 0; i < b; i++) out.push({ width: w, height: h, data: Uint8Array.from(data.subarray(i * h * w * 3, (i + 1) * h * w * 3)) });
  return out;
}
