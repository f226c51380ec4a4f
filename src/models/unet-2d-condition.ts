/**
 * diffusers UNet2DConditionModel (v0.30.3) built from its config.json: SD-1.5, SD-2.1, SDXL and configs near
 * them. NHWC inside; `sample` is NCHW at the boundary, as in diffusers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../layers/conv.js';
import { GroupNorm } from '../layers/norm.js';
import { activation } from '../layers/activations.js';
import { timestepEmbedding, timestepsToArray, TimestepEmbeddingMLP } from '../layers/embeddings.js';
import type { AttnContext, AttnProcessor } from '../attention/processor.js';
import { attnProcessors, setAttnProcessor, withRecordedAttention } from '../attention/registry.js';
import { maskToBias } from '../attention/sdpa.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { checkParameterCount } from '../io/config.js';
import {
  CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D,
  type AttentionSettings, type BlockInputs, type ResnetSettings,
} from './unet-blocks.js';
import { resolveUNetConfig, type UNet2DConditionConfig } from './unet-2d-condition-config.js';

export { resolveUNetConfig, type UNet2DConditionConfig };

/** Inputs of {@link UNet2DConditionModel.forward}; names follow diffusers' arguments. */
export interface UNetForwardOptions {
  /** Noisy latents, NCHW [B, in_channels, H, W]. */
  sample: tf.Tensor;
  /** A number, or a 0-d/1-d tensor (int or float) broadcast to the batch. */
  timestep: number | tf.Tensor;
  /** [B, L, cross_attention_dim]. */
  encoderHiddenStates: tf.Tensor;
  /** [B, L], 1 = keep, 0 = discard; applied to cross-attention only. */
  encoderAttentionMask?: tf.Tensor;
  /** SDXL (`text_time`): pooled text embeddings [B, T]. */
  textEmbeds?: tf.Tensor;
  /** SDXL (`text_time`): micro-conditioning ids [B, N]. */
  timeIds?: tf.Tensor;
  /** LCM guidance embedding [B, time_cond_proj_dim]. */
  timestepCond?: tf.Tensor;
  attnContext?: AttnContext;
  /** Called with intermediate outputs (`conv_in`, `down_blocks.0`, attention module paths…), NCHW for 4-D maps. */
  record?: (name: string, t: tf.Tensor) => void;
}

/** diffusers UNet2DConditionModel; module and parameter names are diffusers' state-dict keys. */
export class UNet2DConditionModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbeddingMLP;
  readonly add_embedding?: TimestepEmbeddingMLP;
  readonly down_blocks: ModuleList<DownBlock2D>;
  readonly mid_block: UNetMidBlock2DCrossAttn | null;
  readonly up_blocks: ModuleList<UpBlock2D>;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private readonly timeEmbedAct: ((x: tf.Tensor) => tf.Tensor) | null;

  constructor(readonly config: UNet2DConditionConfig) {
    super();
    const c = config;
    const n = c.blockOutChannels.length;
    const ch0 = c.blockOutChannels[0];
    this.conv_in = this.child('conv_in', new Conv2d(c.inChannels, ch0, c.convInKernel, 1, (c.convInKernel - 1) / 2));
    const tembDim = c.timeEmbeddingDim ?? ch0 * 4;
    this.time_embedding = this.child('time_embedding', new TimestepEmbeddingMLP(ch0, tembDim, { act: c.actFn, condProjDim: c.timeCondProjDim }));
    if (c.additionEmbedType === 'text_time') {
      this.add_embedding = this.child('add_embedding', new TimestepEmbeddingMLP(c.projectionClassEmbeddingsInputDim!, tembDim));
    }
    this.timeEmbedAct = c.timeEmbeddingActFn ? activation(c.timeEmbeddingActFn) : null;

    const resnet = (outputScaleFactor: number): ResnetSettings => ({
      tembChannels: tembDim, eps: c.normEps, groups: c.normNumGroups, actFn: c.actFn,
      timeScaleShift: c.resnetTimeScaleShift, outputScaleFactor,
    });
    const attention = (i: number, layers: number[], onlyCross: boolean): AttentionSettings => ({
      numAttentionHeads: c.numAttentionHeads[i], transformerLayers: layers,
      crossAttentionDim: c.crossAttentionDim[i], useLinearProjection: c.useLinearProjection,
      onlyCrossAttention: onlyCross, upcastAttention: c.upcastAttention,
    });
    // A scalar transformer layer count applies to every resnet layer of the block.
    const layersFor = (v: number | number[], numLayers: number) => (typeof v === 'number' ? new Array<number>(numLayers).fill(v) : v);

    const downs: DownBlock2D[] = [];
    let outCh = ch0;
    for (let i = 0; i < n; i++) {
      const inCh = outCh;
      outCh = c.blockOutChannels[i];
      const o = {
        numLayers: c.layersPerBlock[i], inChannels: inCh, outChannels: outCh, addDownsample: i < n - 1,
        downsamplePadding: c.downsamplePadding, resnet: resnet(c.resnetOutScaleFactor),
      };
      downs.push(c.downBlockTypes[i] === 'CrossAttnDownBlock2D'
        ? new CrossAttnDownBlock2D({ ...o, attention: attention(i, layersFor(c.transformerLayersPerBlock[i], o.numLayers), c.onlyCrossAttention[i]) })
        : new DownBlock2D(o));
    }
    this.down_blocks = this.child('down_blocks', new ModuleList(downs));

    const last = c.blockOutChannels[n - 1];
    this.mid_block = c.midBlockType === null ? null : this.child('mid_block', new UNetMidBlock2DCrossAttn({
      channels: last, resnet: resnet(c.midBlockScaleFactor),
      // diffusers hands the mid block transformer_layers_per_block[-1] and reads its first entry.
      attention: attention(n - 1, [[c.transformerLayersPerBlock[n - 1]].flat()[0]], false),
    }));

    const rev = [...c.blockOutChannels].reverse();
    const revLayers = [...c.layersPerBlock].reverse();
    const ups: UpBlock2D[] = [];
    outCh = rev[0];
    for (let i = 0; i < n; i++) {
      const prev = outCh;
      outCh = rev[i];
      const o = {
        numLayers: revLayers[i] + 1, inChannels: rev[Math.min(i + 1, n - 1)], outChannels: outCh, prevOutputChannels: prev,
        addUpsample: i < n - 1, resnet: resnet(c.resnetOutScaleFactor),
      };
      const j = n - 1 - i; // the down block at this resolution: heads, cross dim and only_cross are reversed lists
      ups.push(c.upBlockTypes[i] === 'CrossAttnUpBlock2D'
        ? new CrossAttnUpBlock2D({ ...o, attention: attention(j, layersFor(c.reverseTransformerLayersPerBlock[i], o.numLayers), c.onlyCrossAttention[j]) })
        : new UpBlock2D(o));
    }
    this.up_blocks = this.child('up_blocks', new ModuleList(ups));

    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(c.normNumGroups, ch0, c.normEps));
    this.act = activation(c.actFn);
    this.conv_out = this.child('conv_out', new Conv2d(ch0, c.outChannels, c.convOutKernel, 1, (c.convOutKernel - 1) / 2));
  }

  /** Builds the model (no weights allocated) from a diffusers config.json object; `file` names it in errors. */
  static fromConfig(cfg: Record<string, unknown>, file?: string): UNet2DConditionModel {
    return checkParameterCount(new UNet2DConditionModel(resolveUNetConfig(cfg, file)), 'UNet2DConditionModel', file);
  }

  /** Loads a component folder's config and weights (diffusers or converted; `variant` e.g. "fp16"). */
  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<UNet2DConditionModel> {
    return buildAndLoad(dir, (c, file) => UNet2DConditionModel.fromConfig(c, file), opts);
  }

  /** How much the down path shrinks H and W (inputs must be multiples of it). */
  get downscaleFactor(): number { return 2 ** (this.config.blockOutChannels.length - 1); }

  attnProcessors(): Map<string, AttnProcessor> { return attnProcessors(this); }
  setAttnProcessor(p: AttnProcessor | Record<string, AttnProcessor>): void { setAttnProcessor(this, p); }

  /** Checks the forward inputs against the config; errors name the input and the shape expected. */
  validateInputs(o: UNetForwardOptions): void {
    const c = this.config;
    const s = o.sample.shape;
    if (s.length !== 4 || s[1] !== c.inChannels) throw new Error(`sample must be NCHW [B, ${c.inChannels}, H, W], got [${s}]`);
    const [b, , h, w] = s;
    const f = this.downscaleFactor;
    if (h % f !== 0 || w % f !== 0) throw new Error(`sample height and width must be multiples of ${f} (the UNet downsamples ${Math.log2(f)} times), got ${h}×${w}`);
    const e = o.encoderHiddenStates.shape;
    const dims = [...new Set(this.down_blocks.items.flatMap((d, i) => (d.hasCrossAttention ? [c.crossAttentionDim[i]] : []))
      .concat(this.mid_block ? [c.crossAttentionDim[c.crossAttentionDim.length - 1]] : []))];
    if (e.length !== 3 || e[0] !== b || (dims.length && !dims.includes(e[2]!))) {
      throw new Error(`encoderHiddenStates must be [${b}, L, ${dims.join('|') || 'D'}], got [${e}]`);
    }
    const m = o.encoderAttentionMask?.shape;
    if (m && (m.length !== 2 || m[0] !== b || m[1] !== e[1])) throw new Error(`encoderAttentionMask must be [${b}, ${e[1]}], got [${m}]`);
    if (c.additionEmbedType === 'text_time') {
      if (!o.textEmbeds || !o.timeIds) throw new Error('this UNet has addition_embed_type "text_time": textEmbeds and timeIds are required');
      const te = o.textEmbeds.shape;
      const ti = o.timeIds.shape;
      const want = c.projectionClassEmbeddingsInputDim!;
      if (te.length !== 2 || ti.length !== 2 || te[0] !== b || ti[0] !== b || te[1]! + ti[1]! * c.additionTimeEmbedDim! !== want) {
        throw new Error(`textEmbeds [${b}, T] and timeIds [${b}, N] must satisfy T + N·${c.additionTimeEmbedDim} = ${want}, got [${te}] and [${ti}]`);
      }
    }
    if (o.timestepCond) {
      const tc = o.timestepCond.shape;
      if (c.timeCondProjDim === null) throw new Error('timestepCond given but the config has no time_cond_proj_dim');
      if (tc.length !== 2 || tc[0] !== b || tc[1] !== c.timeCondProjDim) throw new Error(`timestepCond must be [${b}, ${c.timeCondProjDim}], got [${tc}]`);
    }
  }

  /** The time embedding `emb` (+ SDXL's add_embedding) the blocks receive, [B, temb]. */
  embed(o: Pick<UNetForwardOptions, 'timestep' | 'textEmbeds' | 'timeIds' | 'timestepCond' | 'record'>, batch: number): tf.Tensor {
    const c = this.config;
    return tf.tidy(() => {
      const t = timestepEmbedding(timestepsToArray(o.timestep, batch), c.blockOutChannels[0], { flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift });
      let emb = this.time_embedding.forward(t, o.timestepCond);
      o.record?.('time_embedding', emb);
      if (this.add_embedding) {
        const ids = o.timeIds!;
        const idEmb = timestepEmbedding(ids.dataSync(), c.additionTimeEmbedDim!, { flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift });
        const aug = this.add_embedding.forward(tf.concat([o.textEmbeds!, idEmb.reshape([batch, -1])], -1));
        o.record?.('add_embedding', aug);
        emb = tf.add(emb, aug);
      }
      return this.timeEmbedAct ? this.timeEmbedAct(emb) : emb;
    });
  }

  /** One denoiser evaluation; returns the NCHW prediction (noise, v or sample, as the model was trained). */
  forward(o: UNetForwardOptions): tf.Tensor4D {
    this.validateInputs(o);
    const record = o.record;
    const run = () => tf.tidy(() => {
      const rec = (name: string, t: tf.Tensor) => record?.(name, t.rank === 4 ? t.transpose([0, 3, 1, 2]) : t);
      const b = o.sample.shape[0];
      let x = o.sample.transpose([0, 2, 3, 1]) as tf.Tensor4D;
      if (this.config.centerInputSample) x = tf.sub(tf.mul(x, 2), 1);
      const temb = this.embed({ ...o, record: record ? rec : undefined }, b);
      const encBias = o.encoderAttentionMask ? maskToBias(o.encoderAttentionMask) : null;
      const a: BlockInputs = { temb, tembAct: this.act(temb), enc: o.encoderHiddenStates, encBias, ctx: o.attnContext ?? {} };

      let h = this.conv_in.forward(x);
      rec('conv_in', h);
      const skips: tf.Tensor4D[] = [h];
      this.down_blocks.items.forEach((blk, i) => {
        const r = blk.forward(h, a);
        h = r.hidden;
        skips.push(...r.residuals);
        rec(`down_blocks.${i}`, h);
      });
      if (this.mid_block) {
        h = this.mid_block.forward(h, a);
        rec('mid_block', h);
      }
      this.up_blocks.items.forEach((blk, i) => {
        const mine = skips.splice(skips.length - blk.resnets.length);
        const next = skips[skips.length - 1];
        h = blk.forward(h, mine, a, next ? [next.shape[1], next.shape[2]] : undefined);
        rec(`up_blocks.${i}`, h);
      });
      return this.head(h, rec).transpose([0, 3, 1, 2]) as tf.Tensor4D;
    });
    return record ? withRecordedAttention(this, record, run) : run();
  }

  /** The output head on NHWC features: conv_norm_out → act → conv_out. */
  head(h: tf.Tensor4D, record?: (name: string, t: tf.Tensor) => void): tf.Tensor4D {
    return tf.tidy(() => {
      if (!record) return this.conv_out.forward(this.conv_norm_out.forwardAct(h, this.act));
      const n = this.conv_norm_out.forward(h);
      record('conv_norm_out', n);
      return this.conv_out.forward(this.act(n) as tf.Tensor4D);
    });
  }

}
