/** Pieces every pipeline shares: latents, guidance embedding, image decoding, option checks. */
import * as tf from '@tensorflow/tfjs-core';
import type { NoiseSource } from '../samplers/torch-generator.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { TruncationReport } from '../tokenizers/index.js';

const f32 = Math.fround;

/** An RGB image, row-major, 3 bytes per pixel. */
export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array;
}

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
 * diffusers `get_guidance_scale_embedding` (LCM's `timestep_cond`): sinusoidal embedding of (w − 1)·1000,
 * computed with torch's float32 roundings.
 */
export function guidanceScaleEmbedding(guidanceScale: number, dim: number, batch: number): tf.Tensor2D {
  const w = f32(f32(guidanceScale - 1) * 1000);
  const half = Math.floor(dim / 2);
  const step = f32(Math.log(10000) / (half - 1));
  const row = new Float32Array(dim);
  for (let i = 0; i < half; i++) {
    const arg = f32(w * f32(Math.exp(f32(i * -step))));
    row[i] = Math.sin(arg);
    row[half + i] = Math.cos(arg);
  }
  const out = new Float32Array(batch * dim);
  for (let b = 0; b < batch; b++) out.set(row, b * dim);
  return tf.tensor2d(out, [batch, dim]);
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

/** Checks height/width against the latent factor (VAE × patch) the model needs. */
export function checkSize(height: number, width: number, factor: number, what: string): void {
  for (const [k, v] of [['height', height], ['width', width]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % factor !== 0) {
      throw new Error(`${k} ${v} must be a positive multiple of ${factor} (${what})`);
    }
  }
}

/** Checks an embedding tensor's rank and width, naming the option. */
export function checkEmbeds(name: string, t: tf.Tensor | undefined, width: number, rank = 3): void {
  if (!t) return;
  if (t.rank !== rank || t.shape[rank - 1] !== width) {
    throw new Error(`${name} must have rank ${rank} with last dimension ${width}, got shape [${t.shape}]`);
  }
}

/** Prints a tokenizer truncation warning once per prompt (diffusers logs the same). */
export function warnTruncated(reports: TruncationReport[], warn: (msg: string) => void = console.warn): void {
  for (const r of reports) if (r.truncated) warn(`[tgate] ${r.message}`);
}

/** Steps and guidance checks shared by the pipelines. */
export function checkCommon(o: { numInferenceSteps?: number; guidanceScale?: number; guidanceRescale?: number; seed?: number }): void {
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed <= 0xffffffff)) {
    throw new Error(`seed must be an integer in 0…2^32−1, got ${o.seed}`);
  }
  if (o.numInferenceSteps !== undefined && (!Number.isInteger(o.numInferenceSteps) || o.numInferenceSteps < 1)) {
    throw new Error(`numInferenceSteps must be a positive integer, got ${o.numInferenceSteps}`);
  }
  if (o.guidanceScale !== undefined && !Number.isFinite(o.guidanceScale)) throw new Error(`guidanceScale must be a number, got ${o.guidanceScale}`);
  if (o.guidanceRescale !== undefined && !(o.guidanceRescale >= 0 && o.guidanceRescale <= 1)) {
    throw new Error(`guidanceRescale must be in [0, 1], got ${o.guidanceRescale}`);
  }
}
