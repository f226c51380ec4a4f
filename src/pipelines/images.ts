/**
 * Image inputs of img2img, inpainting and ControlNets, checked and converted as diffusers' `VaeImageProcessor`
 * does: an image becomes NCHW float32 in [-1, 1] (x/255, then 2x − 1), a mask becomes [B, 1, H, W] of 0 and 1
 * (grayscale, binarized at 0.5), a ControlNet's conditioning image stays in [0, 1] (its processor does not
 * normalize). Inputs are RGB byte images or NCHW tensors in [0, 1]; nothing is resized.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { RGBImage } from '../io/png.js';

/** An image input: one RGB image, several of the same size, or an NCHW float tensor in [0, 1]. */
export type ImageInput = RGBImage | RGBImage[] | tf.Tensor;

/** Largest side accepted, in pixels (8 × the largest latent grid the model configs allow). */
const MAX_SIDE = 8192;

function isRGBImage(v: unknown): v is RGBImage {
  return typeof v === 'object' && v !== null && 'data' in v && 'width' in v && 'height' in v;
}

function checkRGB(img: RGBImage, name: string): void {
  const { width: w, height: h, data } = img;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) {
    throw new Error(`${name}: width and height must be integers in 1…${MAX_SIDE}, got ${w}×${h}`);
  }
  if (!(data instanceof Uint8Array) || data.length !== w * h * 3) {
    throw new Error(`${name}: data must be a Uint8Array of width × height × 3 = ${w * h * 3} RGB bytes, got ${data instanceof Uint8Array ? data.length : typeof data}`);
  }
}

/** The images of an input as a list of RGB images, or null for a tensor; checks every form. */
function rgbList(v: unknown, name: string, channels: number): RGBImage[] | null {
  if (v instanceof tf.Tensor) {
    if (v.rank !== 4 || v.shape[1] !== channels || v.dtype !== 'float32') {
      throw new Error(`${name} must be an NCHW float32 tensor [B, ${channels}, H, W] with values in [0, 1], got ${v.dtype} [${v.shape}]`);
    }
    if (v.shape[0] < 1 || v.shape[2]! > MAX_SIDE || v.shape[3]! > MAX_SIDE) throw new Error(`${name}: shape [${v.shape}] is empty or larger than ${MAX_SIDE} pixels a side`);
    return null;
  }
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0 || !list.every(isRGBImage)) {
    throw new Error(`${name} must be an RGB image ({ width, height, data }), a non-empty array of them, or an NCHW tensor in [0, 1]`);
  }
  list.forEach((img, i) => checkRGB(img, list.length > 1 ? `${name}[${i}]` : name));
  const { width, height } = list[0];
  if (list.some((img) => img.width !== width || img.height !== height)) throw new Error(`${name}: every image must have the same size (${width}×${height})`);
  return list;
}

/** Batch, height and width of an image input (checked). */
export function imageShape(v: unknown, name: string, channels = 3): { batch: number; height: number; width: number } {
  const list = rgbList(v, name, channels);
  if (!list) {
    const [b, , h, w] = (v as tf.Tensor).shape;
    return { batch: b, height: h!, width: w! };
  }
  return { batch: list.length, height: list[0].height, width: list[0].width };
}

async function checkRange(t: tf.Tensor, name: string): Promise<void> {
  const [lo, hi] = await Promise.all([tf.min(t), tf.max(t)].map(async (x) => { const v = (await x.data())[0]; x.dispose(); return v; }));
  if (!(lo >= 0 && hi <= 1)) throw new Error(`${name} values must be in [0, 1], got min ${lo}, max ${hi} (divide bytes by 255; a [-1, 1] tensor is not accepted)`);
}

/** RGB images → [B, 3, H, W] float32 in [0, 1] (numpy's `uint8 / 255.0` in float32). */
function rgbToTensor(list: RGBImage[]): tf.Tensor4D {
  const { width: w, height: h } = list[0];
  const out = new Float32Array(list.length * 3 * h * w);
  list.forEach((img, b) => {
    for (let p = 0; p < h * w; p++) {
      for (let c = 0; c < 3; c++) out[(b * 3 + c) * h * w + p] = Math.fround(img.data[p * 3 + c] / 255);
    }
  });
  return tf.tensor4d(out, [list.length, 3, h, w]);
}

/** `image` → [B, 3, H, W] in [-1, 1], the VAE's input (caller disposes). */
export async function preprocessImage(v: ImageInput, name = 'image'): Promise<tf.Tensor4D> {
  const list = rgbList(v, name, 3);
  if (!list) await checkRange(v as tf.Tensor, name);
  const x = list ? rgbToTensor(list) : (v as tf.Tensor4D);
  try {
    return tf.tidy(() => tf.sub(tf.mul(x, 2), 1) as tf.Tensor4D);
  } finally {
    if (list) x.dispose();
  }
}

/**
 * A ControlNet's conditioning image → [B, C, H, W] in [0, 1], as given (diffusers' control image processor has
 * `do_normalize=False`). RGB images give 3 channels; a ControlNet with other `conditioning_channels` takes a tensor.
 */
export async function preprocessControlImage(v: ImageInput, name: string, channels = 3): Promise<tf.Tensor4D> {
  const list = rgbList(v, name, channels);
  if (list && channels !== 3) throw new Error(`${name}: this ControlNet takes ${channels}-channel images: pass an NCHW tensor [B, ${channels}, H, W] in [0, 1]`);
  if (list) return rgbToTensor(list);
  await checkRange(v as tf.Tensor, name);
  return (v as tf.Tensor4D).clone();
}

/**
 * `maskImage` → [B, 1, H, W] of 0 and 1 (1 = repaint). An RGB image is converted to grayscale as PIL's
 * `convert('L')` does (ITU-R 601 weights in 16-bit fixed point), divided by 255 and binarized at 0.5; a tensor
 * [B, 1, H, W] in [0, 1] is binarized as given.
 */
export async function preprocessMask(v: ImageInput, name = 'maskImage'): Promise<tf.Tensor4D> {
  const list = rgbList(v, name, 1);
  if (!list) {
    await checkRange(v as tf.Tensor, name);
    return tf.tidy(() => tf.cast(tf.greaterEqual(v as tf.Tensor, 0.5), 'float32') as tf.Tensor4D);
  }
  const { width: w, height: h } = list[0];
  const out = new Float32Array(list.length * h * w);
  list.forEach((img, b) => {
    const d = img.data;
    for (let p = 0; p < h * w; p++) {
      const gray = (d[p * 3] * 19595 + d[p * 3 + 1] * 38470 + d[p * 3 + 2] * 7471 + 0x8000) >> 16;
      out[b * h * w + p] = Math.fround(gray / 255) >= 0.5 ? 1 : 0;
    }
  });
  return tf.tensor4d(out, [list.length, 1, h, w]);
}

/**
 * torch `F.interpolate(x, size, mode='nearest')` on NCHW: source index min(⌊dst · (in/out)⌋, in − 1) in float32
 * (identity when the sizes agree, dst >> 1 when doubling), so a mask shrinks to the latent grid exactly as in diffusers.
 */
export function resizeNearest(x: tf.Tensor4D, height: number, width: number): tf.Tensor4D {
  const index = (inSize: number, outSize: number) => Array.from({ length: outSize }, (_, d) => {
    if (outSize === inSize) return d;
    if (outSize === 2 * inSize) return d >> 1;
    const scale = Math.fround(inSize / outSize);
    return Math.min(Math.floor(Math.fround(d * scale)), inSize - 1);
  });
  return tf.tidy(() => {
    const rows = tf.gather(x, tf.tensor1d(index(x.shape[2], height), 'int32'), 2);
    return tf.gather(rows, tf.tensor1d(index(x.shape[3], width), 'int32'), 3) as tf.Tensor4D;
  });
}
