/** Latents in and out of a pipeline: the initial noise, VAE decoding, and the RGB bytes of the images. */
import * as tf from '@tensorflow/tfjs-core';
import type { NoiseSource } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { RGBImage } from '../io/png.js';

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

/** Decodes latents with the VAE to [0,1] NCHW images (diffusers' postprocess, denormalised). */
export function decodeLatents(vae: AutoencoderKL, latents: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const c = vae.config;
    let z: tf.Tensor;
    if (c.latentsMean && c.latentsStd) {
      const mean = tf.tensor(c.latentsMean, [1, c.latentsMean.length, 1, 1]);
      const std = tf.tensor(c.latentsStd, [1, c.latentsStd.length, 1, 1]);
      z = tf.add(tf.div(tf.mul(latents, std), c.scalingFactor), mean);
    } else {
      z = tf.div(latents, c.scalingFactor);
    }
    const x = vae.decode(z);
    return tf.clipByValue(tf.add(tf.div(x, 2), 0.5), 0, 1) as tf.Tensor4D;
  });
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
