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

/** The VAE config's latents_mean / latents_std as [1, C, 1, 1] tensors (call inside tf.tidy), or null. */
function latentStats(vae: AutoencoderKL): { mean: tf.Tensor; std: tf.Tensor } | null {
  const { latentsMean: m, latentsStd: s } = vae.config;
  return m && s ? { mean: tf.tensor(m, [1, m.length, 1, 1]), std: tf.tensor(s, [1, s.length, 1, 1]) } : null;
}

/**
 * What the VAE decodes: latents·latents_std/scaling_factor + latents_mean when the VAE config has them
 * (Playground v2.5; diffusers' SDXL pipeline and T-GATE's), else latents/scaling_factor.
 */
export function vaeDecodeInput(vae: AutoencoderKL, latents: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const st = latentStats(vae);
    const sf = vae.config.scalingFactor;
    return st ? tf.add(tf.div(tf.mul(latents, st.std), sf), st.mean) : tf.div(latents, sf);
  });
}

/**
 * The inverse, for a sample of the VAE's latent distribution: (z − latents_mean)·scaling_factor/latents_std
 * (diffusers' SDXL img2img), else z·scaling_factor.
 */
export function vaeEncodeOutput(vae: AutoencoderKL, z: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const st = latentStats(vae);
    const sf = vae.config.scalingFactor;
    return st ? tf.div(tf.mul(tf.sub(z, st.mean), sf), st.std) : tf.mul(z, sf);
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
