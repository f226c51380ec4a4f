/**
 * Device buffer limits and the splits they force. On WebGPU a binding larger than
 * `maxStorageBufferBindingSize` does not fail loudly: the dispatch is dropped and the output stays zero.
 * So sizes are checked before dispatch, attention is split by query rows when its score matrix would not
 * fit, and anything that cannot be split raises an error naming the limit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { kernels } from './kernels.js';

let override: number | null = null;

/** How many attention calls were split because of the limit (for tests and diagnostics). */
export const limitStats = { attentionSplits: 0 };

/**
 * Sets the per-buffer byte limit used instead of the device's own (e.g. to test the split path, or to be
 * conservative on a browser that reports more than it can give); `null` returns to the device's limit.
 */
export function setBufferLimit(bytes: number | null): void {
  if (bytes !== null && !(bytes > 0)) throw new Error(`setBufferLimit: bytes must be positive or null, got ${bytes}`);
  override = bytes;
}

export interface DeviceLimits {
  backend: string;
  /** WebGPU: the largest storage buffer one binding may cover. */
  maxStorageBufferBindingSize?: number;
  /** WebGPU: the largest buffer the device may create. */
  maxBufferSize?: number;
  /** WebGL: the largest texture side in texels. */
  maxTextureSize?: number;
}

/** The current backend's size limits (WebGPU: the device's, not the adapter's; WebGL: MAX_TEXTURE_SIZE). */
export function deviceLimits(): DeviceLimits {
  const backend = tf.getBackend();
  if (backend === 'webgpu') {
    const limits = (tf.backend() as unknown as { device?: { limits?: Record<string, number> } }).device?.limits;
    return { backend, maxStorageBufferBindingSize: limits?.maxStorageBufferBindingSize, maxBufferSize: limits?.maxBufferSize };
  }
  if (backend === 'webgl') return { backend, maxTextureSize: tf.env().getNumber('WEBGL_MAX_TEXTURE_SIZE') };
  return { backend };
}

/**
 * The byte size no single tensor may exceed on the current backend, or null when there is none we know
 * of (cpu, wasm: the wasm heap limit applies to the total, not to one tensor). WebGL counts one float per
 * texel of the largest square texture, which is conservative.
 */
export function bufferLimitBytes(): number | null {
  if (override !== null) return override;
  const l = deviceLimits();
  if (l.maxStorageBufferBindingSize || l.maxBufferSize) {
    return Math.min(l.maxStorageBufferBindingSize ?? Infinity, l.maxBufferSize ?? Infinity);
  }
  if (l.maxTextureSize) return l.maxTextureSize * l.maxTextureSize * 4;
  return null;
}

/**
 * Query rows per pass for an attention whose score matrix needs `rowBytes` per query row and has `nq`
 * rows: undefined when the whole matrix fits the limit; throws when not even one row does.
 */
export function attentionQueryChunk(rowBytes: number, nq: number): number | undefined {
  const limit = bufferLimitBytes();
  if (limit === null || rowBytes * nq <= limit) return undefined;
  if (rowBytes > limit) {
    throw new Error(`attention needs ${rowBytes} bytes per query row of its score matrix, over the ${limit}-byte buffer limit of ${tf.getBackend()} (use a smaller image)`);
  }
  limitStats.attentionSplits++;
  return Math.floor(limit / rowBytes);
}

/** The parts of a UNet/VAE config that set the largest activations. */
export interface SizePlanInput {
  height: number;
  width: number;
  /** Latent downscale of the VAE (2^(len(vae block_out_channels)−1)). */
  vaeScale: number;
  unetChannels: number[];
  vaeChannels: number[];
  /** Largest attention head count in the UNet. */
  heads: number;
  /** Rows the denoiser runs at once: the images of one call (prompts × numImagesPerPrompt), × 2 with classifier-free guidance. */
  batch: number;
}

/** What to lower when a tensor of the generation does not fit: its size, and the batch for the denoiser's tensors. */
const LOWER_SIZE = 'lower height and width (--height, --width)';
const LOWER_BATCH = `${LOWER_SIZE} or the number of images (numImagesPerPrompt, --num-images)`;

/**
 * Checks before a generation that every tensor that is not split can be one buffer: the UNet's largest
 * skip concatenation, the VAE decoder's full-resolution activations (one image at a time), and one query
 * row of the UNet's largest self-attention (unless the backend's fused attention holds no scores). Returns
 * the problems, each naming the options to lower (empty when it fits).
 */
export function checkGenerationFits(p: SizePlanInput): string[] {
  const limit = bufferLimitBytes();
  if (limit === null) return [];
  const lh = p.height / p.vaeScale;
  const lw = p.width / p.vaeScale;
  const [u0, u1 = u0] = p.unetChannels;
  const [v0, v1 = v0] = p.vaeChannels;
  const need: [string, number, string][] = [
    ['UNet skip concatenation', p.batch * lh * lw * (u0! + u1!) * 4, LOWER_BATCH],
    ['VAE decoder activation', p.height * p.width * Math.max(v0!, v1!) * 4, LOWER_SIZE],
    ...(kernels().attention ? [] : [['one attention score row', p.batch * p.heads * lh * lw * 4, LOWER_BATCH] as [string, number, string]]),
  ];
  return need.filter(([, b]) => b > limit).map(([what, b, remedy]) =>
    `${p.width}×${p.height}: ${what} needs ${(b / 2 ** 20).toFixed(1)} MiB, over the ${(limit / 2 ** 20).toFixed(1)} MiB buffer limit of ${tf.getBackend()}: ${remedy}`);
}
