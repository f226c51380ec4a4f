/**
 * PixArt's input-side layers (diffusers `embeddings.py` / `normalization.py`): PatchEmbed with the 2-D sin-cos
 * position embedding, the caption projection, and AdaLayerNormSingle with its combined timestep/size embedding.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../nn/module.js';
import { Conv2d } from './conv.js';
import { Linear } from './linear.js';
import { geluTanh, silu } from './activations.js';
import { TimestepEmbeddingMLP, timestepEmbedding } from './embeddings.js';

const f32 = Math.fround;

/**
 * diffusers get_2d_sincos_pos_embed for a gridH × gridW patch grid → [gridH·gridW, dim] (row-major over
 * the grid). Reproduces numpy's arithmetic: grid coordinates in float32, frequencies and sin/cos in float64.
 * As in diffusers, the first half of the channels encodes the column (w) coordinate, the second the row.
 */
export function get2dSincosPosEmbed(dim: number, gridH: number, gridW: number, baseSize: number, interpolationScale: number): Float32Array {
  if (dim % 4 !== 0) throw new Error(`2-D sin-cos position embedding needs a dimension divisible by 4, got ${dim}`);
  const coords = (n: number) => {
    const step = f32(n / baseSize);
    const s = f32(interpolationScale);
    return Array.from({ length: n }, (_, i) => f32(f32(i / step) / s));
  };
  const ch = coords(gridH);
  const cw = coords(gridW);
  const quarter = dim / 4;
  const omega = Array.from({ length: quarter }, (_, k) => 1 / 10000 ** (k / (dim / 4)));
  const out = new Float32Array(gridH * gridW * dim);
  for (let r = 0; r < gridH; r++) {
    for (let c = 0; c < gridW; c++) {
      const o = (r * gridW + c) * dim;
      for (let k = 0; k < quarter; k++) {
        const aw = cw[c] * omega[k];
        const ah = ch[r] * omega[k];
        out[o + k] = Math.sin(aw);
        out[o + quarter + k] = Math.cos(aw);
        out[o + 2 * quarter + k] = Math.sin(ah);
        out[o + 3 * quarter + k] = Math.cos(ah);
      }
    }
  }
  return out;
}

/**
 * diffusers PatchEmbed (sincos, no layer norm, flatten): a patch_size-strided conv, then the position
 * embedding recomputed for the input's grid (any size, non-square included). NHWC in, [B, N, dim] out.
 */
export class PatchEmbed extends Module {
  readonly proj: Conv2d;
  /** diffusers: base_size = sample_size // patch_size. */
  readonly baseSize: number;
  private readonly cache = new Map<string, Float32Array>();

  constructor(readonly sampleSize: number, readonly patchSize: number, inChannels: number, readonly embedDim: number, readonly interpolationScale: number) {
    super();
    this.proj = this.child('proj', new Conv2d(inChannels, embedDim, patchSize, patchSize, 0));
    this.baseSize = Math.floor(sampleSize / patchSize);
  }

  posEmbed(gridH: number, gridW: number): Float32Array {
    const key = `${gridH}x${gridW}`;
    let e = this.cache.get(key);
    if (!e) {
      e = get2dSincosPosEmbed(this.embedDim, gridH, gridW, this.baseSize, this.interpolationScale);
      this.cache.set(key, e);
    }
    return e;
  }

  forward(x: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => {
      const [b, h, w] = x.shape;
      const gh = Math.floor(h / this.patchSize);
      const gw = Math.floor(w / this.patchSize);
      const p = this.proj.forward(x).reshape([b, gh * gw, this.embedDim]);
      return tf.add(p, tf.tensor3d(this.posEmbed(gh, gw), [1, gh * gw, this.embedDim])) as tf.Tensor3D;
    });
  }
}

/** diffusers PixArtAlphaTextProjection: linear_1 → GELU(tanh) → linear_2. */
export class PixArtAlphaTextProjection extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  constructor(inFeatures: number, hiddenSize: number, outFeatures = hiddenSize) {
    super();
    this.linear_1 = this.child('linear_1', new Linear(inFeatures, hiddenSize));
    this.linear_2 = this.child('linear_2', new Linear(hiddenSize, outFeatures));
  }
  forward(caption: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.linear_2.forward(geluTanh(this.linear_1.forward(caption))));
  }
}

const SINUSOID = { flipSinToCos: true, downscaleFreqShift: 0 } as const;

/**
 * diffusers PixArtAlphaCombinedTimestepSizeEmbeddings: the timestep embedding, plus (with additional
 * conditions) resolution and aspect-ratio embeddings of size dim/3 each, concatenated and added.
 */
export class PixArtAlphaCombinedTimestepSizeEmbeddings extends Module {
  readonly timestep_embedder: TimestepEmbeddingMLP;
  readonly resolution_embedder?: TimestepEmbeddingMLP;
  readonly aspect_ratio_embedder?: TimestepEmbeddingMLP;

  constructor(embeddingDim: number, readonly sizeEmbDim: number, readonly useAdditionalConditions: boolean) {
    super();
    this.timestep_embedder = this.child('timestep_embedder', new TimestepEmbeddingMLP(256, embeddingDim));
    if (useAdditionalConditions) {
      this.resolution_embedder = this.child('resolution_embedder', new TimestepEmbeddingMLP(256, sizeEmbDim));
      this.aspect_ratio_embedder = this.child('aspect_ratio_embedder', new TimestepEmbeddingMLP(256, sizeEmbDim));
    }
  }

  /** `resolution` holds B·2 values (h, w per sample), `aspectRatio` B values; both only with additional conditions. */
  forward(timesteps: number[], resolution: number[] | null, aspectRatio: number[] | null): tf.Tensor2D {
    return tf.tidy(() => {
      const b = timesteps.length;
      const t = this.timestep_embedder.forward(timestepEmbedding(timesteps, 256, SINUSOID));
      if (!this.useAdditionalConditions) return t as tf.Tensor2D;
      if (!resolution || !aspectRatio) throw new Error('PixArt with use_additional_conditions needs resolution and aspect_ratio');
      const res = this.resolution_embedder!.forward(timestepEmbedding(resolution, 256, SINUSOID)).reshape([b, -1]);
      const ar = this.aspect_ratio_embedder!.forward(timestepEmbedding(aspectRatio, 256, SINUSOID)).reshape([b, -1]);
      return tf.add(t, tf.concat([res, ar], 1)) as tf.Tensor2D;
    });
  }
}

/** diffusers AdaLayerNormSingle: returns [linear(silu(emb)) (B, 6·dim), emb (B, dim)]. */
export class AdaLayerNormSingle extends Module {
  readonly emb: PixArtAlphaCombinedTimestepSizeEmbeddings;
  readonly linear: Linear;
  constructor(readonly dim: number, useAdditionalConditions: boolean) {
    super();
    this.emb = this.child('emb', new PixArtAlphaCombinedTimestepSizeEmbeddings(dim, Math.floor(dim / 3), useAdditionalConditions));
    this.linear = this.child('linear', new Linear(dim, 6 * dim));
  }
  forward(timesteps: number[], resolution: number[] | null, aspectRatio: number[] | null): [tf.Tensor2D, tf.Tensor2D] {
    return tf.tidy(() => {
      const e = this.emb.forward(timesteps, resolution, aspectRatio);
      return [this.linear.forward(silu(e)) as tf.Tensor2D, e];
    });
  }
}
