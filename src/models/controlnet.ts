/**
 * diffusers ControlNetModel (v0.30.3) for SD and SDXL (whose ControlNets add the text-time embedding, as the
 * UNet): a copy of the UNet's down path and mid block (the same block classes), fed the latents plus an
 * embedding of the conditioning image, whose every skip connection and mid-block output pass through a 1×1
 * "zero" convolution. The outputs are the residuals the UNet adds to its own skips and mid block
 * (`downBlockAdditionalResiduals` / `midBlockAdditionalResidual` of UNet2DConditionModel.forward). NHWC
 * inside; NCHW at the boundary, as in diffusers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../layers/conv.js';
import { activation } from '../layers/activations.js';
import { TimestepEmbeddingMLP } from '../layers/embeddings.js';
import type { AttnContext, AttnProcessor } from '../attention/processor.js';
import { attnProcessors, setAttnProcessor } from '../attention/registry.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { buildDownBlocks, buildMidBlock, type DownBlock2D, type UNetMidBlock2DCrossAttn } from './unet-blocks.js';
import { blockInputs, checkDenoiserInputs, embedTime, runDownBlocks, withRecording, type DenoiserInputs } from './down-path.js';
import { controlnetConfigFromUnet, resolveControlNetConfig, type ControlNetConfig } from './controlnet-config.js';
import { checkParameterCount } from '../io/config.js';

export { resolveControlNetConfig, controlnetConfigFromUnet, type ControlNetConfig };

/** Inputs of {@link ControlNetModel.forward}; names follow diffusers' arguments. */
export interface ControlNetForwardOptions extends Omit<DenoiserInputs, 'timestepCond'> {
  /**
   * The conditioning image, NCHW [B (or 1), conditioning_channels, H·f, W·f] for latents of H×W, where
   * f = 2^(len(conditioning_embedding_out_channels) − 1) (8 for SD/SDXL ControlNets): pixel resolution,
   * values as the pipelines prepare them ([0, 1]).
   */
  controlnetCond: tf.Tensor;
  /** Multiplies every output (diffusers' conditioning_scale); default 1. */
  conditioningScale?: number;
  /** diffusers' guess_mode: the outputs are scaled from 0.1 (shallowest) to 1 (mid block) on a log scale, times conditioningScale. */
  guessMode?: boolean;
  attnContext?: AttnContext;
  /** Called with intermediate outputs (`conv_in`, `controlnet_cond_embedding`, `down_blocks.0`, attention module paths…), NCHW for 4-D maps. */
  record?: (name: string, t: tf.Tensor) => void;
}

/** The residuals for the UNet, NCHW: one per skip connection of the down path, and the mid block's. */
export interface ControlNetOutput {
  downBlockResSamples: tf.Tensor4D[];
  midBlockResSample: tf.Tensor4D;
}

/** diffusers ControlNetConditioningEmbedding: conv_in, (3×3, then 3×3 stride-2) per step, conv_out; SiLU between. */
export class ControlNetConditioningEmbedding extends Module {
  readonly conv_in: Conv2d;
  readonly blocks: ModuleList<Conv2d>;
  readonly conv_out: Conv2d;
  private readonly act = activation('silu');

  constructor(embeddingChannels: number, conditioningChannels: number, widths: number[]) {
    super();
    this.conv_in = this.child('conv_in', new Conv2d(conditioningChannels, widths[0], 3, 1, 1));
    const blocks: Conv2d[] = [];
    for (let i = 0; i + 1 < widths.length; i++) {
      blocks.push(new Conv2d(widths[i], widths[i], 3, 1, 1), new Conv2d(widths[i], widths[i + 1], 3, 2, 1));
    }
    this.blocks = this.child('blocks', new ModuleList(blocks));
    this.conv_out = this.child('conv_out', new Conv2d(widths[widths.length - 1], embeddingChannels, 3, 1, 1));
  }

  /** NHWC in, NHWC out at 1/2^(steps) the resolution. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.act(this.conv_in.forward(x)) as tf.Tensor4D;
      for (const b of this.blocks.items) h = this.act(b.forward(h)) as tf.Tensor4D;
      return this.conv_out.forward(h);
    });
  }
}

/**
 * diffusers' guess-mode scales: torch.logspace(-1, 0, n + 1) in float32 (each entry rounded from double, as
 * torch computes it, the second half counted back from the end), times the conditioning scale in float32.
 */
export function guessModeScales(n: number, conditioningScale: number): number[] {
  const steps = n + 1;
  const step = 1 / (steps - 1);
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => {
    const e = i < half ? -1 + step * i : 0 - step * (steps - i - 1);
    return Math.fround(Math.fround(10 ** e) * Math.fround(conditioningScale));
  });
}

/** diffusers ControlNetModel; module and parameter names are diffusers' state-dict keys. */
export class ControlNetModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbeddingMLP;
  readonly add_embedding?: TimestepEmbeddingMLP;
  readonly controlnet_cond_embedding: ControlNetConditioningEmbedding;
  readonly down_blocks: ModuleList<DownBlock2D>;
  readonly controlnet_down_blocks: ModuleList<Conv2d>;
  readonly controlnet_mid_block: Conv2d;
  readonly mid_block: UNetMidBlock2DCrossAttn;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(readonly config: ControlNetConfig) {
    super();
    const c = config;
    const boc = c.blockOutChannels;
    const tembDim = boc[0] * 4;
    this.conv_in = this.child('conv_in', new Conv2d(c.inChannels, boc[0], 3, 1, 1));
    this.time_embedding = this.child('time_embedding', new TimestepEmbeddingMLP(boc[0], tembDim, { act: c.actFn }));
    if (c.additionEmbedType === 'text_time') {
      this.add_embedding = this.child('add_embedding', new TimestepEmbeddingMLP(c.projectionClassEmbeddingsInputDim!, tembDim));
    }
    this.controlnet_cond_embedding = this.child('controlnet_cond_embedding',
      new ControlNetConditioningEmbedding(boc[0], c.conditioningChannels, c.conditioningEmbeddingOutChannels));
    this.down_blocks = this.child('down_blocks', new ModuleList(buildDownBlocks(c, tembDim)));
    // One zero convolution per skip connection: conv_in's, then each block's resnets and downsampler.
    const zero = (ch: number) => new Conv2d(ch, ch, 1);
    const zeros = [zero(boc[0])];
    this.down_blocks.items.forEach((b, i) => {
      for (let l = 0; l < b.resnets.length; l++) zeros.push(zero(boc[i]));
      if (b.downsamplers) zeros.push(zero(boc[i]));
    });
    this.controlnet_down_blocks = this.child('controlnet_down_blocks', new ModuleList(zeros));
    this.controlnet_mid_block = this.child('controlnet_mid_block', zero(boc[boc.length - 1]));
    this.mid_block = this.child('mid_block', buildMidBlock(c, tembDim, c.midBlockType === 'UNetMidBlock2D' ? 0 : 1));
    this.act = activation(c.actFn);
  }

  /** Builds the model (no weights allocated) from a diffusers config.json object; `file` names it in errors. */
  static fromConfig(cfg: Record<string, unknown>, file?: string): ControlNetModel {
    return checkParameterCount(new ControlNetModel(resolveControlNetConfig(cfg, file)), 'ControlNetModel', file);
  }

  /** Loads a ControlNet folder's config and weights (diffusers or converted; `variant` e.g. "fp16"). */
  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<ControlNetModel> {
    return buildAndLoad(dir, (c, file) => ControlNetModel.fromConfig(c, file), opts);
  }

  /** Resolution ratio between the conditioning image and the latents (8 for SD/SDXL ControlNets). */
  get conditioningScaleFactor(): number { return 2 ** (this.config.conditioningEmbeddingOutChannels.length - 1); }

  attnProcessors(): Map<string, AttnProcessor> { return attnProcessors(this); }
  setAttnProcessor(p: AttnProcessor | Record<string, AttnProcessor>): void { setAttnProcessor(this, p); }

  /** Checks the forward inputs against the config; errors name the input and the shape expected. */
  validateInputs(o: ControlNetForwardOptions): void {
    checkDenoiserInputs(this, o, 'ControlNet');
    const [b, , h, w] = o.sample.shape;
    const c = o.controlnetCond.shape;
    // The embedding's stride-2 convolutions round up, as torch's do: the image must come back to the latents' size.
    const down = (x: number) => { for (let i = 1; i < this.config.conditioningEmbeddingOutChannels.length; i++) x = Math.ceil(x / 2); return x; };
    const f = this.conditioningScaleFactor;
    if (c.length !== 4 || (c[0] !== b && c[0] !== 1) || c[1] !== this.config.conditioningChannels || down(c[2]) !== h || down(c[3]) !== w) {
      throw new Error(`controlnetCond must be NCHW [${b} or 1, ${this.config.conditioningChannels}, ${h * f}, ${w * f}] (the latents' size × ${f}), got [${c}]`);
    }
    const s = o.conditioningScale;
    if (s !== undefined && !Number.isFinite(s)) throw new Error(`conditioningScale must be a finite number, got ${s}`);
  }

  /** The residuals for the UNet, scaled by conditioningScale (or guess mode's scales). */
  forward(o: ControlNetForwardOptions): ControlNetOutput {
    this.validateInputs(o);
    return withRecording(this, o.record, (rec) => {
      let cond = o.controlnetCond.transpose([0, 2, 3, 1]) as tf.Tensor4D;
      if (this.config.channelOrder === 'bgr') cond = tf.reverse(cond, 3);
      const temb = embedTime(this, o, o.sample.shape[0], o.record ? rec : undefined);
      const a = blockInputs(o, temb, this.act);
      const x = this.conv_in.forward(o.sample.transpose([0, 2, 3, 1]) as tf.Tensor4D);
      rec('conv_in', x);
      const embedded = this.controlnet_cond_embedding.forward(cond);
      rec('controlnet_cond_embedding', embedded);
      const { hidden, skips } = runDownBlocks(this, tf.add(x, embedded), a, rec);
      const mid = this.mid_block.forward(hidden, a);
      rec('mid_block', mid);
      const outs = [...skips.map((s, k) => this.controlnet_down_blocks.at(k).forward(s)), this.controlnet_mid_block.forward(mid)];
      const scale = o.conditioningScale ?? 1;
      const scales = o.guessMode && !this.config.globalPoolConditions ? guessModeScales(skips.length, scale) : outs.map(() => scale);
      const nchw = outs.map((t, k) => {
        // x·1 is x: skipping the product changes nothing.
        let y = scales[k] === 1 ? t : tf.mul(t, scales[k]);
        if (this.config.globalPoolConditions) y = tf.mean(y, [1, 2], true);
        return y.transpose([0, 3, 1, 2]) as tf.Tensor4D;
      });
      return { downBlockResSamples: nchw.slice(0, -1), midBlockResSample: nchw[nchw.length - 1] };
    });
  }
}
