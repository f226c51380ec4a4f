/**
 * diffusers UNet2DConditionModel (v0.30.3) built from its config.json: SD-1.5, SD-2.1, SDXL and configs near
 * them. NHWC inside; `sample` is NCHW at the boundary, as in diffusers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../layers/conv.js';
import { GroupNorm } from '../layers/norm.js';
import { activation } from '../layers/activations.js';
import { TimestepEmbeddingMLP } from '../layers/embeddings.js';
import type { AttnContext, AttnProcessor } from '../attention/processor.js';
import { attnProcessors, setAttnProcessor } from '../attention/registry.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { checkParameterCount } from '../io/config.js';
import {
  CrossAttnUpBlock2D, UpBlock2D, attentionSettings, buildDownBlocks, buildMidBlock, perLayer, resnetSettings,
  type DownBlock2D, type UNetMidBlock2DCrossAttn,
} from './unet-blocks.js';
import { resolveUNetConfig, type UNet2DConditionConfig } from './unet-2d-condition-config.js';
import { blockInputs, checkDenoiserInputs, embedTime, runDownBlocks, withRecording, type DenoiserInputs } from './down-path.js';

export { resolveUNetConfig, type UNet2DConditionConfig };

/** Inputs of {@link UNet2DConditionModel.forward}; names follow diffusers' arguments. */
export interface UNetForwardOptions extends DenoiserInputs {
  attnContext?: AttnContext;
  /**
   * ControlNet residuals, NCHW, one per skip connection of the down path in the order ControlNetModel returns
   * them (conv_in, then each resnet/attention and downsampler): added to the skips before the up path.
   * Requires {@link midBlockAdditionalResidual} too.
   */
  downBlockAdditionalResiduals?: tf.Tensor[];
  /** ControlNet residual added to the mid block's output, NCHW. */
  midBlockAdditionalResidual?: tf.Tensor;
  /** Called with intermediate outputs (`conv_in`, `down_blocks.0`, attention module paths…), NCHW for 4-D maps. */
  record?: (name: string, t: tf.Tensor) => void;
}

/** A ControlNet residual (NCHW) in our layout, after checking it has the shape of the feature map it is added to. */
export function residualNhwc(r: tf.Tensor, like: tf.Tensor4D, name: string): tf.Tensor4D {
  const [b, h, w, c] = like.shape;
  if (r.rank !== 4 || r.shape[0] !== b || r.shape[1] !== c || r.shape[2] !== h || r.shape[3] !== w) {
    throw new Error(`${name} must be NCHW [${b}, ${c}, ${h}, ${w}] (the feature map it is added to), got [${r.shape}]`);
  }
  return r.transpose([0, 2, 3, 1]) as tf.Tensor4D;
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

    this.down_blocks = this.child('down_blocks', new ModuleList(buildDownBlocks(c, tembDim)));
    this.mid_block = c.midBlockType === null ? null : this.child('mid_block', buildMidBlock(c, tembDim));

    const rev = [...c.blockOutChannels].reverse();
    const revLayers = [...c.layersPerBlock].reverse();
    const ups: UpBlock2D[] = [];
    let outCh = rev[0];
    for (let i = 0; i < n; i++) {
      const prev = outCh;
      outCh = rev[i];
      const o = {
        numLayers: revLayers[i] + 1, inChannels: rev[Math.min(i + 1, n - 1)], outChannels: outCh, prevOutputChannels: prev,
        addUpsample: i < n - 1, resnet: resnetSettings(c, tembDim, c.resnetOutScaleFactor),
      };
      const j = n - 1 - i; // the down block at this resolution: heads, cross dim and only_cross are reversed lists
      const layers = perLayer(c.reverseTransformerLayersPerBlock[i], o.numLayers, 'reverse_transformer_layers_per_block');
      ups.push(c.upBlockTypes[i] === 'CrossAttnUpBlock2D'
        ? new CrossAttnUpBlock2D({ ...o, attention: attentionSettings(c, j, layers, c.onlyCrossAttention[j]) })
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
    checkDenoiserInputs(this, o, 'UNet');
    const c = this.config;
    const b = o.sample.shape[0];
    if (!o.downBlockAdditionalResiduals !== !o.midBlockAdditionalResidual) {
      throw new Error('ControlNet residuals come in pairs: give both downBlockAdditionalResiduals and midBlockAdditionalResidual, or neither');
    }
    const skips = 1 + this.down_blocks.items.reduce((k, d) => k + d.resnets.length + (d.downsamplers ? 1 : 0), 0);
    if (o.downBlockAdditionalResiduals && o.downBlockAdditionalResiduals.length !== skips) {
      throw new Error(`downBlockAdditionalResiduals must hold one tensor per skip connection (${skips}), got ${o.downBlockAdditionalResiduals.length}`);
    }
    if (o.timestepCond) {
      const tc = o.timestepCond.shape;
      if (c.timeCondProjDim === null) throw new Error('timestepCond given but the config has no time_cond_proj_dim');
      if (tc.length !== 2 || tc[0] !== b || tc[1] !== c.timeCondProjDim) throw new Error(`timestepCond must be [${b}, ${c.timeCondProjDim}], got [${tc}]`);
    }
  }

  /** The time embedding `emb` (+ SDXL's add_embedding) the blocks receive, [B, temb]. */
  embed(o: Pick<UNetForwardOptions, 'timestep' | 'textEmbeds' | 'timeIds' | 'timestepCond' | 'record'>, batch: number): tf.Tensor {
    const emb = embedTime(this, o, batch, o.record);
    if (!this.timeEmbedAct) return emb;
    const out = this.timeEmbedAct(emb);
    emb.dispose();
    return out;
  }

  /** One denoiser evaluation; returns the NCHW prediction (noise, v or sample, as the model was trained). */
  forward(o: UNetForwardOptions): tf.Tensor4D {
    this.validateInputs(o);
    return withRecording(this, o.record, (rec) => {
      const b = o.sample.shape[0];
      let x = o.sample.transpose([0, 2, 3, 1]) as tf.Tensor4D;
      if (this.config.centerInputSample) x = tf.sub(tf.mul(x, 2), 1);
      const temb = this.embed({ ...o, record: o.record ? rec : undefined }, b);
      const a = blockInputs(o, temb, this.act);
      const x0 = this.conv_in.forward(x);
      rec('conv_in', x0);
      const down = runDownBlocks(this, x0, a, rec);
      let h = down.hidden;
      const skips = down.skips;
      const extra = o.downBlockAdditionalResiduals;
      if (extra) skips.forEach((s, k) => { skips[k] = tf.add(s, residualNhwc(extra[k], s, `downBlockAdditionalResiduals[${k}]`)); });
      if (this.mid_block) {
        h = this.mid_block.forward(h, a);
        rec('mid_block', h);
      }
      if (o.midBlockAdditionalResidual) h = tf.add(h, residualNhwc(o.midBlockAdditionalResidual, h, 'midBlockAdditionalResidual'));
      this.up_blocks.items.forEach((blk, i) => {
        const mine = skips.splice(skips.length - blk.resnets.length);
        const next = skips[skips.length - 1];
        h = blk.forward(h, mine, a, next ? [next.shape[1], next.shape[2]] : undefined);
        rec(`up_blocks.${i}`, h);
      });
      return this.head(h, rec).transpose([0, 3, 1, 2]) as tf.Tensor4D;
    });
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
