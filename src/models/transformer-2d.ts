/**
 * diffusers BasicTransformerBlock (norm_type layer_norm for the UNets, ada_norm_single for PixArt) and the
 * UNets' spatial Transformer2DModel.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, type Parameter } from '../nn/module.js';
import { Attention } from '../attention/attention.js';
import { FeedForward } from '../layers/feedforward.js';
import { GroupNorm, LayerNorm } from '../layers/norm.js';
import { Linear } from '../layers/linear.js';
import { Conv2d } from '../layers/conv.js';
import type { AttnContext } from '../attention/processor.js';

export interface BasicTransformerBlockOptions {
  dim: number;
  numAttentionHeads: number;
  attentionHeadDim: number;
  crossAttentionDim?: number | null;
  activationFn?: string;
  attentionBias?: boolean;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
  normElementwiseAffine?: boolean;
  normType?: 'layer_norm' | 'ada_norm_single';
  normEps?: number;
  attentionOutBias?: boolean;
}

export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2?: LayerNorm;
  readonly attn2?: Attention;
  readonly norm3?: LayerNorm;
  readonly ff: FeedForward;
  readonly scale_shift_table?: Parameter;
  private readonly adaSingle: boolean;
  private readonly onlyCross: boolean;

  constructor(o: BasicTransformerBlockOptions) {
    super();
    const normType = o.normType ?? 'layer_norm';
    if (normType !== 'layer_norm' && normType !== 'ada_norm_single') throw new Error(`BasicTransformerBlock: unsupported norm_type "${normType}"`);
    this.adaSingle = normType === 'ada_norm_single';
    this.onlyCross = o.onlyCrossAttention ?? false;
    const eps = o.normEps ?? 1e-5;
    const affine = o.normElementwiseAffine ?? true;
    const attn = (cross: number | null) => new Attention({
      queryDim: o.dim, crossAttentionDim: cross, heads: o.numAttentionHeads, dimHead: o.attentionHeadDim,
      bias: o.attentionBias ?? false, upcastAttention: o.upcastAttention, outBias: o.attentionOutBias ?? true,
    });
    this.norm1 = this.child('norm1', new LayerNorm(o.dim, eps, affine));
    this.attn1 = this.child('attn1', attn(this.onlyCross ? o.crossAttentionDim ?? null : null));
    if (o.crossAttentionDim != null) {
      this.norm2 = this.child('norm2', new LayerNorm(o.dim, eps, affine));
      this.attn2 = this.child('attn2', attn(o.crossAttentionDim));
    } else if (this.adaSingle) {
      this.norm2 = this.child('norm2', new LayerNorm(o.dim, eps, affine));
    }
    if (!this.adaSingle) this.norm3 = this.child('norm3', new LayerNorm(o.dim, eps, affine));
    this.ff = this.child('ff', new FeedForward(o.dim, { activationFn: o.activationFn ?? 'geglu' }));
    if (this.adaSingle) this.scale_shift_table = this.param('scale_shift_table', [6, o.dim]);
  }

  /**
   * `timestep` is AdaLayerNormSingle's [B, 6·dim] output (PixArt only); `encBias` the additive
   * cross-attention mask bias.
   */
  forward(h: tf.Tensor, enc: tf.Tensor | null, encBias: tf.Tensor | null, ctx: AttnContext, timestep: tf.Tensor | null = null): tf.Tensor {
    return tf.tidy(() => {
      const b = h.shape[0];
      let mod: tf.Tensor[] = [];
      if (this.adaSingle) {
        if (!timestep) throw new Error('ada_norm_single block needs the timestep modulation');
        const dim = this.scale_shift_table!.shape[1];
        mod = tf.split(tf.add(this.scale_shift_table!.t.expandDims(0), timestep.reshape([b, 6, dim])), 6, 1);
      }
      const modulate = (x: tf.Tensor, shift: tf.Tensor, scale: tf.Tensor) => tf.add(tf.mul(x, tf.add(scale, 1)), shift);

      // An attention answered from TGATE's cache never reads its input: its norm is skipped (h has its shape).
      let n = h;
      if (!this.attn1.reuses(this.onlyCross, ctx)) {
        n = this.norm1.forward(h);
        if (this.adaSingle) n = modulate(n, mod[0], mod[1]);
      }
      let a = this.attn1.forward(n, this.onlyCross ? enc : null, this.onlyCross ? encBias : null, ctx);
      if (this.adaSingle) a = tf.mul(mod[2], a);
      h = tf.add(a, h);

      if (this.attn2) {
        // PixArt applies no norm before cross-attention (diffusers: "For PixArt norm2 isn't applied here").
        n = this.adaSingle || this.attn2.reuses(true, ctx) ? h : this.norm2!.forward(h);
        h = tf.add(this.attn2.forward(n, enc, encBias, ctx), h);
      }

      if (this.adaSingle) {
        n = modulate(this.norm2!.forward(h), mod[3], mod[4]);
        return tf.add(tf.mul(mod[5], this.ff.forward(n)), h);
      }
      return tf.add(this.ff.forward(this.norm3!.forward(h)), h);
    });
  }
}

export interface Transformer2DOptions {
  numAttentionHeads: number;
  attentionHeadDim: number;
  inChannels: number;
  numLayers?: number;
  crossAttentionDim?: number | null;
  normNumGroups?: number;
  useLinearProjection?: boolean;
  upcastAttention?: boolean;
  onlyCrossAttention?: boolean;
  attentionBias?: boolean;
  normEps?: number;
}

/** The UNets' spatial transformer: GroupNorm, proj_in, transformer blocks, proj_out, residual. */
export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly proj_in: Linear | Conv2d;
  readonly transformer_blocks: ModuleList<BasicTransformerBlock>;
  readonly proj_out: Linear | Conv2d;
  private readonly linear: boolean;

  constructor(o: Transformer2DOptions) {
    super();
    const inner = o.numAttentionHeads * o.attentionHeadDim;
    this.linear = o.useLinearProjection ?? false;
    this.norm = this.child('norm', new GroupNorm(o.normNumGroups ?? 32, o.inChannels, 1e-6));
    this.proj_in = this.child('proj_in', this.linear ? new Linear(o.inChannels, inner) : new Conv2d(o.inChannels, inner, 1));
    const blocks: BasicTransformerBlock[] = [];
    for (let i = 0; i < (o.numLayers ?? 1); i++) {
      blocks.push(new BasicTransformerBlock({
        dim: inner, numAttentionHeads: o.numAttentionHeads, attentionHeadDim: o.attentionHeadDim,
        crossAttentionDim: o.crossAttentionDim, onlyCrossAttention: o.onlyCrossAttention,
        upcastAttention: o.upcastAttention, attentionBias: o.attentionBias, normEps: o.normEps,
      }));
    }
    this.transformer_blocks = this.child('transformer_blocks', new ModuleList(blocks));
    this.proj_out = this.child('proj_out', this.linear ? new Linear(inner, o.inChannels) : new Conv2d(inner, o.inChannels, 1));
  }

  forward(x: tf.Tensor4D, enc: tf.Tensor | null, encBias: tf.Tensor | null, ctx: AttnContext): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, hh, ww] = x.shape;
      let h: tf.Tensor = this.norm.forward(x);
      if (this.linear) h = (this.proj_in as Linear).forward(h.reshape([b, hh * ww, -1]));
      else h = (this.proj_in as Conv2d).forward(h as tf.Tensor4D).reshape([b, hh * ww, -1]);
      for (const blk of this.transformer_blocks.items) h = blk.forward(h, enc, encBias, ctx);
      const inner = h.shape[2]!;
      const out = this.linear
        ? (this.proj_out as Linear).forward(h).reshape([b, hh, ww, -1])
        : (this.proj_out as Conv2d).forward(h.reshape([b, hh, ww, inner]) as tf.Tensor4D);
      return tf.add(out, x) as tf.Tensor4D;
    });
  }
}
