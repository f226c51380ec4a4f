/**
 * The UNet2DConditionModel building blocks (diffusers `unet_2d_blocks.py`): CrossAttnDownBlock2D, DownBlock2D,
 * UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D, on NHWC tensors.
 *
 * Each block runs on its own (`forward` takes everything it needs), so a caller such as DeepCache can run a
 * prefix of the down path, reuse a cached deep feature and run the matching suffix of the up path.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { ResnetBlock2D, Downsample2D, Upsample2D } from '../layers/resnet.js';
import { Transformer2DModel } from './transformer-2d.js';
import type { AttnContext } from '../attention/processor.js';
import type { DownPathConfig } from './unet-2d-condition-config.js';

/** What every block needs besides its input feature map. */
export interface BlockInputs {
  /** Time embedding [B, temb]. */
  temb: tf.Tensor | null;
  /** act(temb), computed once for all resnets (they share the UNet's act_fn); computed per resnet when absent. */
  tembAct?: tf.Tensor | null;
  /** Encoder hidden states [B, L, D] (cross-attention keys/values). */
  enc: tf.Tensor | null;
  /** Additive cross-attention bias [B, 1, L] from the encoder attention mask, or null. */
  encBias: tf.Tensor | null;
  ctx: AttnContext;
}

/** Options shared by the resnets of a block (diffusers' resnet_* arguments). */
export interface ResnetSettings {
  tembChannels: number;
  eps: number;
  groups: number;
  actFn: string;
  timeScaleShift: 'default' | 'scale_shift';
  outputScaleFactor: number;
}

/** Options of the spatial transformers of a cross-attention block. */
export interface AttentionSettings {
  numAttentionHeads: number;
  /** Transformer layers per resnet layer (diffusers transformer_layers_per_block, expanded). */
  transformerLayers: number[];
  crossAttentionDim: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
  upcastAttention: boolean;
}

function resnet(inCh: number, outCh: number, r: ResnetSettings): ResnetBlock2D {
  return new ResnetBlock2D({
    inChannels: inCh, outChannels: outCh, tembChannels: r.tembChannels, groups: r.groups, eps: r.eps,
    nonlinearity: r.actFn, timeEmbeddingNorm: r.timeScaleShift, outputScaleFactor: r.outputScaleFactor,
  });
}

function transformer(channels: number, layers: number, a: AttentionSettings, groups: number): Transformer2DModel {
  if (channels % a.numAttentionHeads !== 0) {
    throw new Error(`a block with ${channels} channels cannot be split into ${a.numAttentionHeads} attention heads`);
  }
  // diffusers' blocks derive the head size from the channel count: out_channels // num_attention_heads.
  return new Transformer2DModel({
    numAttentionHeads: a.numAttentionHeads, attentionHeadDim: channels / a.numAttentionHeads, inChannels: channels,
    numLayers: layers, crossAttentionDim: a.crossAttentionDim, normNumGroups: groups,
    useLinearProjection: a.useLinearProjection, onlyCrossAttention: a.onlyCrossAttention, upcastAttention: a.upcastAttention,
  });
}

/** Expands transformer_layers_per_block (an int or one entry per layer) to one count per layer. */
export function perLayer(v: number | number[], numLayers: number, what: string): number[] {
  if (typeof v === 'number') return new Array<number>(numLayers).fill(v);
  if (v.length !== numLayers) throw new Error(`${what} has ${v.length} entries for ${numLayers} layers`);
  return v;
}

export interface DownBlockOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  addDownsample: boolean;
  downsamplePadding: number;
  resnet: ResnetSettings;
  attention?: AttentionSettings;
}

/** Output of a down block: the hidden states and the skip connections it adds (one per resnet, + downsample). */
export interface DownBlockOutput {
  hidden: tf.Tensor4D;
  residuals: tf.Tensor4D[];
}

/** diffusers DownBlock2D: resnets (+ Downsample2D); CrossAttnDownBlock2D adds a transformer after each resnet. */
export class DownBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions?: ModuleList<Transformer2DModel>;
  readonly downsamplers?: ModuleList<Downsample2D>;

  constructor(o: DownBlockOptions) {
    super();
    const rs: ResnetBlock2D[] = [];
    for (let i = 0; i < o.numLayers; i++) rs.push(resnet(i === 0 ? o.inChannels : o.outChannels, o.outChannels, o.resnet));
    this.resnets = this.child('resnets', new ModuleList(rs));
    if (o.attention) {
      const layers = perLayer(o.attention.transformerLayers, o.numLayers, 'transformer_layers_per_block');
      this.attentions = this.child('attentions', new ModuleList(layers.map((n) => transformer(o.outChannels, n, o.attention!, o.resnet.groups))));
    }
    if (o.addDownsample) {
      this.downsamplers = this.child('downsamplers', new ModuleList([new Downsample2D(o.outChannels, true, o.outChannels, o.downsamplePadding)]));
    }
  }

  /** Whether the block attends to the encoder states (diffusers' `has_cross_attention`). */
  get hasCrossAttention(): boolean { return this.attentions !== undefined; }

  forward(x: tf.Tensor4D, a: BlockInputs): DownBlockOutput {
    return tf.tidy(() => {
      let h = x;
      const residuals: tf.Tensor4D[] = [];
      this.resnets.items.forEach((r, i) => {
        h = r.forward(h, a.temb, a.tembAct);
        if (this.attentions) h = this.attentions.at(i).forward(h, a.enc, a.encBias, a.ctx);
        residuals.push(h);
      });
      if (this.downsamplers) {
        h = this.downsamplers.at(0).forward(h);
        residuals.push(h);
      }
      return { hidden: h, residuals };
    });
  }
}

export class CrossAttnDownBlock2D extends DownBlock2D {
  constructor(o: DownBlockOptions & { attention: AttentionSettings }) { super(o); }
}

export interface UpBlockOptions {
  numLayers: number;
  /** Channels of the deepest skip this block consumes (diffusers `in_channels`). */
  inChannels: number;
  outChannels: number;
  prevOutputChannels: number;
  addUpsample: boolean;
  resnet: ResnetSettings;
  attention?: AttentionSettings;
}

/** diffusers UpBlock2D: (concat skip → resnet) per layer (+ Upsample2D); CrossAttnUpBlock2D adds transformers. */
export class UpBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions?: ModuleList<Transformer2DModel>;
  readonly upsamplers?: ModuleList<Upsample2D>;

  constructor(o: UpBlockOptions) {
    super();
    const rs: ResnetBlock2D[] = [];
    for (let i = 0; i < o.numLayers; i++) {
      const skip = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
      const inCh = i === 0 ? o.prevOutputChannels : o.outChannels;
      rs.push(resnet(inCh + skip, o.outChannels, o.resnet));
    }
    this.resnets = this.child('resnets', new ModuleList(rs));
    if (o.attention) {
      const layers = perLayer(o.attention.transformerLayers, o.numLayers, 'transformer_layers_per_block');
      this.attentions = this.child('attentions', new ModuleList(layers.map((n) => transformer(o.outChannels, n, o.attention!, o.resnet.groups))));
    }
    if (o.addUpsample) this.upsamplers = this.child('upsamplers', new ModuleList([new Upsample2D(o.outChannels, true, o.outChannels)]));
  }

  get hasCrossAttention(): boolean { return this.attentions !== undefined; }

  /**
   * `skips` are this block's skip connections in the order the down path produced them (the last one is
   * consumed first); `upsampleSize` is the spatial size of the next block's deepest skip, so odd sizes line up.
   */
  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], a: BlockInputs, upsampleSize?: [number, number]): tf.Tensor4D {
    if (skips.length !== this.resnets.length) throw new Error(`up block needs ${this.resnets.length} skip connections, got ${skips.length}`);
    return tf.tidy(() => {
      let h = x;
      this.resnets.items.forEach((r, i) => {
        h = r.forward(tf.concat([h, skips[skips.length - 1 - i]], 3) as tf.Tensor4D, a.temb, a.tembAct);
        if (this.attentions) h = this.attentions.at(i).forward(h, a.enc, a.encBias, a.ctx);
      });
      if (this.upsamplers) {
        const plain = !upsampleSize || (upsampleSize[0] === 2 * h.shape[1] && upsampleSize[1] === 2 * h.shape[2]);
        h = this.upsamplers.at(0).forward(h, plain ? undefined : upsampleSize);
      }
      return h;
    });
  }
}

export class CrossAttnUpBlock2D extends UpBlock2D {
  constructor(o: UpBlockOptions & { attention: AttentionSettings }) { super(o); }
}

/** diffusers UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) per layer. */
export class UNetMidBlock2DCrossAttn extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Transformer2DModel>;

  constructor(o: { channels: number; numLayers?: number; resnet: ResnetSettings; attention: AttentionSettings }) {
    super();
    const n = o.numLayers ?? 1;
    const layers = perLayer(o.attention.transformerLayers, n, 'mid block transformer_layers_per_block');
    const rs = [resnet(o.channels, o.channels, o.resnet)];
    const ts: Transformer2DModel[] = [];
    for (let i = 0; i < n; i++) {
      // The mid block's transformers never use only_cross_attention (diffusers does not pass it here).
      ts.push(transformer(o.channels, layers[i], { ...o.attention, onlyCrossAttention: false }, o.resnet.groups));
      rs.push(resnet(o.channels, o.channels, o.resnet));
    }
    this.attentions = this.child('attentions', new ModuleList(ts));
    this.resnets = this.child('resnets', new ModuleList(rs));
  }

  get hasCrossAttention(): boolean { return true; }

  forward(x: tf.Tensor4D, a: BlockInputs): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets.at(0).forward(x, a.temb, a.tembAct);
      this.attentions.items.forEach((t, i) => {
        h = t.forward(h, a.enc, a.encBias, a.ctx);
        h = this.resnets.at(i + 1).forward(h, a.temb, a.tembAct);
      });
      return h;
    });
  }
}

/** The resnet settings of every block of a config (`outputScaleFactor`: the mid block has its own). */
export function resnetSettings(c: DownPathConfig, tembChannels: number, outputScaleFactor: number): ResnetSettings {
  return { tembChannels, eps: c.normEps, groups: c.normNumGroups, actFn: c.actFn, timeScaleShift: c.resnetTimeScaleShift, outputScaleFactor };
}

/** The attention settings of down block `i` (heads, cross dim and only_cross are per down block; up blocks pass the mirrored index). */
export function attentionSettings(c: DownPathConfig, i: number, layers: number[], onlyCross: boolean): AttentionSettings {
  return {
    numAttentionHeads: c.numAttentionHeads[i], transformerLayers: layers, crossAttentionDim: c.crossAttentionDim[i],
    useLinearProjection: c.useLinearProjection, onlyCrossAttention: onlyCross, upcastAttention: c.upcastAttention,
  };
}

/** The down blocks of a config, as UNet2DConditionModel and ControlNetModel build them. */
export function buildDownBlocks(c: DownPathConfig, tembChannels: number): DownBlock2D[] {
  const n = c.blockOutChannels.length;
  const downs: DownBlock2D[] = [];
  let outCh = c.blockOutChannels[0];
  for (let i = 0; i < n; i++) {
    const inCh = outCh;
    outCh = c.blockOutChannels[i];
    const o = {
      numLayers: c.layersPerBlock[i], inChannels: inCh, outChannels: outCh, addDownsample: i < n - 1,
      downsamplePadding: c.downsamplePadding, resnet: resnetSettings(c, tembChannels, c.resnetOutScaleFactor),
    };
    const layers = perLayer(c.transformerLayersPerBlock[i], o.numLayers, 'transformer_layers_per_block');
    downs.push(c.downBlockTypes[i] === 'CrossAttnDownBlock2D'
      ? new CrossAttnDownBlock2D({ ...o, attention: attentionSettings(c, i, layers, c.onlyCrossAttention[i]) })
      : new DownBlock2D(o));
  }
  return downs;
}

/**
 * The mid block at the deepest width: UNetMidBlock2DCrossAttn, or with `attentionLayers` 0 a single resnet
 * (diffusers' UNetMidBlock2D with num_layers=0 and no attention, which some ControlNets use).
 */
export function buildMidBlock(c: DownPathConfig, tembChannels: number, attentionLayers = 1): UNetMidBlock2DCrossAttn {
  const n = c.blockOutChannels.length;
  return new UNetMidBlock2DCrossAttn({
    channels: c.blockOutChannels[n - 1], numLayers: attentionLayers, resnet: resnetSettings(c, tembChannels, c.midBlockScaleFactor),
    // diffusers hands the mid block transformer_layers_per_block[-1] and reads its first entry.
    attention: attentionSettings(c, n - 1, attentionLayers ? [[c.transformerLayersPerBlock[n - 1]].flat()[0]] : [], false),
  });
}
