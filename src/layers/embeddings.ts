/**
 * Embeddings: timestep embeddings (diffusers `embeddings.py`: get_timestep_embedding, Timesteps,
 * TimestepEmbedding) and torch.nn.Embedding's lookup table (the text encoders' token and position tables).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type Parameter } from '../nn/module.js';
import { Linear } from './linear.js';
import { activation } from './activations.js';
import { gatherRows } from './table.js';

const f32 = Math.fround;

/**
 * Sinusoidal embedding of a vector of timesteps, [N] → [N, dim]. Computed in JS with the same float32
 * roundings torch applies (exponent, exp, product), then sin/cos, so large timesteps match bit-for-bit
 * closely rather than drifting with a different argument rounding.
 */
export function timestepEmbedding(
  timesteps: ArrayLike<number>, dim: number,
  opts: { flipSinToCos?: boolean; downscaleFreqShift?: number; scale?: number; maxPeriod?: number } = {},
): tf.Tensor2D {
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000 } = opts;
  const half = Math.floor(dim / 2);
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f32(Math.exp(f32(f32(f32(-Math.log(maxPeriod)) * i) / f32(half - downscaleFreqShift))));
  const n = timesteps.length;
  const out = new Float32Array(n * dim);
  for (let r = 0; r < n; r++) {
    const t = f32(timesteps[r]);
    for (let i = 0; i < half; i++) {
      const arg = f32(f32(t * freqs[i]) * scale);
      const s = Math.sin(arg);
      const c = Math.cos(arg);
      out[r * dim + i] = flipSinToCos ? c : s;
      out[r * dim + half + i] = flipSinToCos ? s : c;
    }
  }
  return tf.tensor2d(out, [n, dim]);
}

/** Reads timesteps given as a number or a 1-D tensor and broadcasts them to `batch`. */
export function timestepsToArray(t: number | tf.Tensor | ArrayLike<number>, batch: number): number[] {
  let vals: number[];
  if (typeof t === 'number') vals = [t];
  else if (t instanceof tf.Tensor) {
    if (t.rank > 1) throw new Error(`timestep must be a number or a 0-d/1-d tensor, got shape [${t.shape}]`);
    vals = Array.from(t.dataSync());
  } else vals = Array.from(t);
  if (vals.length === 1) return new Array(batch).fill(vals[0]);
  if (vals.length !== batch) throw new Error(`timestep has ${vals.length} values but the batch is ${batch}`);
  return vals;
}

/** diffusers `TimestepEmbedding`: linear_1 → act → linear_2, with LCM's optional `cond_proj`. */
export class TimestepEmbeddingMLP extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  readonly cond_proj?: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  constructor(inChannels: number, timeEmbedDim: number, opts: { act?: string; outDim?: number; condProjDim?: number | null } = {}) {
    super();
    this.linear_1 = this.child('linear_1', new Linear(inChannels, timeEmbedDim));
    if (opts.condProjDim) this.cond_proj = this.child('cond_proj', new Linear(opts.condProjDim, inChannels, false));
    this.act = activation(opts.act ?? 'silu');
    this.linear_2 = this.child('linear_2', new Linear(timeEmbedDim, opts.outDim ?? timeEmbedDim));
  }

  forward(sample: tf.Tensor, condition?: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let x = sample;
      if (condition) {
        if (!this.cond_proj) throw new Error('timestep_cond given but the model has no time_cond_proj_dim');
        x = tf.add(x, this.cond_proj.forward(condition));
      }
      return this.linear_2.forward(this.act(this.linear_1.forward(x)));
    });
  }
}

/** torch.nn.Embedding: a [num, dim] table read by rows (./table.ts: float16, or in pieces when large). */
export class Embedding extends Module {
  readonly weight: Parameter;
  constructor(readonly num: number, readonly dim: number) {
    super();
    this.weight = this.param('weight', [num, dim], 'plain', { halves: true, rowPieces: true });
  }
  forward(ids: tf.Tensor): tf.Tensor {
    return gatherRows(this.weight, ids);
  }
}
