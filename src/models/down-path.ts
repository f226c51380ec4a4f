/**
 * What UNet2DConditionModel and ControlNetModel share around their down path: the checks of `sample`, the
 * encoder states, the mask and SDXL's text-time conditions, the time embedding, the inputs every block
 * receives, running the down blocks, and recording intermediates as diffusers' forward hooks see them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { timestepEmbedding, timestepsToArray, type TimestepEmbeddingMLP } from '../layers/embeddings.js';
import type { Module } from '../nn/module.js';
import type { AttnContext } from '../attention/processor.js';
import { withRecordedAttention } from '../attention/registry.js';
import { maskToBias } from '../attention/sdpa.js';
import type { BlockInputs, DownBlock2D, UNetMidBlock2DCrossAttn } from './unet-blocks.js';
import type { DownPathConfig, TextTimeConfig } from './unet-2d-condition-config.js';

/** The inputs both models take, named after diffusers' arguments. */
export interface DenoiserInputs {
  /** Noisy latents, NCHW [B, in_channels, H, W]. */
  sample: tf.Tensor;
  /** A number, or a 0-d/1-d tensor (int or float) broadcast to the batch. */
  timestep: number | tf.Tensor;
  /** [B, L, cross_attention_dim]. */
  encoderHiddenStates: tf.Tensor;
  /** [B, L], 1 = keep, 0 = discard; applied to cross-attention only (ControlNet's `attention_mask`). */
  encoderAttentionMask?: tf.Tensor;
  /** SDXL (`text_time`): pooled text embeddings [B, T]. */
  textEmbeds?: tf.Tensor;
  /** SDXL (`text_time`): micro-conditioning ids [B, N]. */
  timeIds?: tf.Tensor;
  /** LCM guidance embedding [B, time_cond_proj_dim] (UNet only). */
  timestepCond?: tf.Tensor;
}

/** A model with a UNet's down path, as far as its inputs are concerned. */
export interface DownPathModel extends Module {
  readonly config: DownPathConfig & TextTimeConfig & { inChannels: number; flipSinToCos: boolean; freqShift: number };
  readonly down_blocks: { items: DownBlock2D[] };
  readonly mid_block: UNetMidBlock2DCrossAttn | null;
  readonly time_embedding: TimestepEmbeddingMLP;
  readonly add_embedding?: TimestepEmbeddingMLP;
}

/** Checks the shared inputs against the config; errors name the input and the shape expected. */
export function checkDenoiserInputs(m: DownPathModel, o: DenoiserInputs, what: string): void {
  const c = m.config;
  const s = o.sample.shape;
  if (s.length !== 4 || s[1] !== c.inChannels) throw new Error(`sample must be NCHW [B, ${c.inChannels}, H, W], got [${s}]`);
  const [b, , h, w] = s;
  const f = 2 ** (c.blockOutChannels.length - 1);
  if (h % f !== 0 || w % f !== 0) throw new Error(`sample height and width must be multiples of ${f} (the ${what} downsamples ${Math.log2(f)} times), got ${h}×${w}`);
  const e = o.encoderHiddenStates.shape;
  const dims = [...new Set(m.down_blocks.items.flatMap((d, i) => (d.hasCrossAttention ? [c.crossAttentionDim[i]] : []))
    .concat(m.mid_block?.attentions.length ? [c.crossAttentionDim[c.crossAttentionDim.length - 1]] : []))];
  if (e.length !== 3 || e[0] !== b || (dims.length && !dims.includes(e[2]!))) {
    throw new Error(`encoderHiddenStates must be [${b}, L, ${dims.join('|') || 'D'}], got [${e}]`);
  }
  const mask = o.encoderAttentionMask?.shape;
  if (mask && (mask.length !== 2 || mask[0] !== b || mask[1] !== e[1])) throw new Error(`encoderAttentionMask must be [${b}, ${e[1]}], got [${mask}]`);
  if (c.additionEmbedType === 'text_time') {
    if (!o.textEmbeds || !o.timeIds) throw new Error(`this ${what} has addition_embed_type "text_time": textEmbeds and timeIds are required`);
    const te = o.textEmbeds.shape;
    const ti = o.timeIds.shape;
    const want = c.projectionClassEmbeddingsInputDim!;
    if (te.length !== 2 || ti.length !== 2 || te[0] !== b || ti[0] !== b || te[1]! + ti[1]! * c.additionTimeEmbedDim! !== want) {
      throw new Error(`textEmbeds [${b}, T] and timeIds [${b}, N] must satisfy T + N·${c.additionTimeEmbedDim} = ${want}, got [${te}] and [${ti}]`);
    }
  }
}

/**
 * time_embedding(Timesteps(t)) (+ SDXL's add_embedding of the pooled text embeddings and the sinusoidal
 * time ids), [B, temb], before any time_embedding_act_fn.
 */
export function embedTime(
  m: DownPathModel, o: Pick<DenoiserInputs, 'timestep' | 'textEmbeds' | 'timeIds' | 'timestepCond'>, batch: number,
  record?: (name: string, t: tf.Tensor) => void,
): tf.Tensor {
  const c = m.config;
  return tf.tidy(() => {
    const t = timestepEmbedding(timestepsToArray(o.timestep, batch), c.blockOutChannels[0], { flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift });
    let emb = m.time_embedding.forward(t, o.timestepCond);
    record?.('time_embedding', emb);
    if (m.add_embedding) {
      const idEmb = timestepEmbedding(o.timeIds!.dataSync(), c.additionTimeEmbedDim!, { flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift });
      const aug = m.add_embedding.forward(tf.concat([o.textEmbeds!, idEmb.reshape([batch, -1])], -1));
      record?.('add_embedding', aug);
      emb = tf.add(emb, aug);
    }
    return emb;
  });
}

/** Receives an intermediate output by name (NCHW for 4-D maps, as every public tensor). */
export type Recorder = (name: string, t: tf.Tensor) => void;

/**
 * Runs a forward in one tidy. With `record`, `fn`'s recorder reports NHWC maps to it as NCHW, and every
 * attention's output is reported under its module path.
 */
export function withRecording<T extends tf.TensorContainer>(m: Module, record: Recorder | undefined, fn: (rec: Recorder) => T): T {
  const run = () => tf.tidy(() => fn((name, t) => record?.(name, t.rank === 4 ? t.transpose([0, 3, 1, 2]) : t)));
  return record ? withRecordedAttention(m, record, run) : run();
}

/** The inputs every block receives: the time embedding and its activation, the encoder states, the mask as a bias. */
export function blockInputs(
  o: DenoiserInputs & { attnContext?: AttnContext }, temb: tf.Tensor, act: (x: tf.Tensor) => tf.Tensor,
): BlockInputs {
  const encBias = o.encoderAttentionMask ? maskToBias(o.encoderAttentionMask) : null;
  return { temb, tembAct: act(temb), enc: o.encoderHiddenStates, encBias, ctx: o.attnContext ?? {} };
}

/** conv_in's output through the down blocks: the deepest features and every skip connection, conv_in's first. */
export function runDownBlocks(m: DownPathModel, x: tf.Tensor4D, a: BlockInputs, rec: Recorder): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] } {
  let h = x;
  const skips: tf.Tensor4D[] = [h];
  m.down_blocks.items.forEach((blk, i) => {
    const r = blk.forward(h, a);
    h = r.hidden;
    skips.push(...r.residuals);
    rec(`down_blocks.${i}`, h);
  });
  return { hidden: h, skips };
}
