/**
 * diffusers PixArtTransformer2DModel (PixArt-α / PixArt-Σ), also accepted when saved as the older
 * `Transformer2DModel` with norm_type "ada_norm_single". hidden_states and the output are NCHW at the boundary.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, type Parameter } from '../nn/module.js';
import { Linear } from '../layers/linear.js';
import { LayerNorm } from '../layers/norm.js';
import { BasicTransformerBlock } from './transformer-2d.js';
import { timestepsToArray } from '../layers/embeddings.js';
import { AdaLayerNormSingle, PatchEmbed, PixArtAlphaTextProjection } from '../layers/pixart-embeddings.js';
import type { AttnContext, AttnProcessor } from '../attention/processor.js';
import { attnProcessors, setAttnProcessor, withRecordedAttention } from '../attention/registry.js';
import { maskToBias } from '../attention/sdpa.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { ConfigReader, LIMITS, checkParameterCount } from '../io/config.js';

export interface PixArtTransformerConfig {
  numAttentionHeads: number;
  attentionHeadDim: number;
  inChannels: number;
  outChannels: number;
  numLayers: number;
  crossAttentionDim: number;
  attentionBias: boolean;
  sampleSize: number;
  patchSize: number;
  activationFn: string;
  onlyCrossAttention: boolean;
  /** Accepted for config fidelity; we compute in fp32. */
  upcastAttention: boolean;
  normElementwiseAffine: boolean;
  normEps: number;
  /** Resolved: config value, else max(sample_size // 64, 1). */
  interpolationScale: number;
  /** Resolved: config value, else sample_size == 128 (diffusers' rule). */
  useAdditionalConditions: boolean;
  captionChannels: number | null;
}

export interface PixArtForwardOptions {
  /** Latents [B, in_channels, H, W]; H and W multiples of patch_size. */
  hiddenStates: tf.Tensor;
  /** One value for the whole batch or one per sample. */
  timestep: number | number[] | tf.Tensor;
  /** Text-encoder states [B, L, caption_channels]. */
  encoderHiddenStates: tf.Tensor;
  /** [B, L] with 1 = keep, 0 = discard, or an additive bias [B, 1, L]. */
  encoderAttentionMask?: tf.Tensor | null;
  /** [B, 2] (height, width) or [2] for the whole batch; needed with additional conditions. */
  resolution?: tf.Tensor | number[] | number[][] | null;
  /** [B, 1] or [1]; needed with additional conditions. */
  aspectRatio?: tf.Tensor | number[] | number[][] | null;
  attnContext?: AttnContext;
  /** Receives intermediate outputs by diffusers module path; clone what you keep. */
  record?: (name: string, t: tf.Tensor) => void;
}

/** Class defaults (diffusers v0.30.3) of the keys a saved config may omit. */
const DEFAULTS = {
  PixArtTransformer2DModel: {
    num_attention_heads: 16, attention_head_dim: 72, out_channels: 8, num_layers: 28, cross_attention_dim: 1152, attention_bias: true,
    activation_fn: 'gelu-approximate', norm_type: 'ada_norm_single', norm_elementwise_affine: false, norm_eps: 1e-6,
  },
  // The original PixArt-α release saves its transformer as this generic class.
  Transformer2DModel: {
    num_attention_heads: 16, attention_head_dim: 88, out_channels: null, num_layers: 1, cross_attention_dim: null, attention_bias: false,
    activation_fn: 'geglu', norm_type: 'layer_norm', norm_elementwise_affine: true, norm_eps: 1e-5,
  },
};

/** Reads a PixArt transformer config; errors name `file`, the class and the key. */
export function resolvePixArtConfig(raw: Record<string, unknown>, file?: string): PixArtTransformerConfig {
  const cls = ConfigReader.of(raw, 'PixArtTransformer2DModel', file)
    .oneOf<keyof typeof DEFAULTS>('_class_name', ['PixArtTransformer2DModel', 'Transformer2DModel'], { default: 'PixArtTransformer2DModel' });
  const r = ConfigReader.of(raw, cls, file);
  const d0 = DEFAULTS[cls];
  r.oneOf('norm_type', ['ada_norm_single'], { default: d0.norm_type });
  r.oneOf('attention_type', ['default', null], { default: 'default' });
  if (cls === 'PixArtTransformer2DModel') r.int('num_embeds_ada_norm', { default: 1000, min: 1 });
  // Transformer2DModel options PixArt does not use.
  r.oneOf('num_vector_embeds', [null], { default: null });
  r.oneOf('use_linear_projection', [false, null], { default: false });
  r.oneOf('double_self_attention', [false, null], { default: false });
  const sampleSize = r.int('sample_size', { min: 1, max: LIMITS.latentSize });
  const patchSize = r.int('patch_size', { min: 1, max: 64 });
  const inChannels = r.int('in_channels', { min: 1, max: LIMITS.channels });
  const heads = r.int('num_attention_heads', { default: d0.num_attention_heads, min: 1, max: LIMITS.heads });
  const headDim = r.int('attention_head_dim', { default: d0.attention_head_dim, min: 1, max: LIMITS.headDim });
  const d = heads * headDim;
  if (d % 4) throw r.fail('attention_head_dim', `gives inner dim ${d}, which must be divisible by 4 for the position embedding`);
  // PixArt cross-attends to the caption: a dimension is needed even where the class default is null.
  const crossDim = r.int('cross_attention_dim', { default: d0.cross_attention_dim, min: 1, max: LIMITS.width });
  const captionChannels = r.int('caption_channels', { default: null, nullable: true, min: 1, max: LIMITS.width });
  if (captionChannels !== null && crossDim !== d) throw r.fail('cross_attention_dim', `must equal the inner dim ${d} (the caption is projected to it)`);
  const interp = r.number('interpolation_scale', { default: null, nullable: true, above: 0 });
  const uac = r.bool('use_additional_conditions', { default: null, nullable: true });
  const useAc = uac ?? sampleSize === 128; // diffusers' rule
  if (useAc && d % 3) throw r.fail('use_additional_conditions', `needs an inner dim divisible by 3, got ${d}`);
  return {
    numAttentionHeads: heads, attentionHeadDim: headDim, inChannels,
    outChannels: r.int('out_channels', { default: d0.out_channels, nullable: true, min: 1, max: LIMITS.channels }) ?? inChannels,
    numLayers: r.int('num_layers', { default: d0.num_layers, min: 1, max: LIMITS.layers }), crossAttentionDim: crossDim,
    attentionBias: r.bool('attention_bias', { default: d0.attention_bias }), sampleSize, patchSize,
    activationFn: r.oneOf('activation_fn', ['gelu-approximate', 'gelu', 'geglu'], { default: d0.activation_fn }),
    onlyCrossAttention: r.bool('only_cross_attention', { default: false }), upcastAttention: r.bool('upcast_attention', { default: false }),
    normElementwiseAffine: r.bool('norm_elementwise_affine', { default: d0.norm_elementwise_affine }),
    normEps: r.number('norm_eps', { default: d0.norm_eps, above: 0 }),
    interpolationScale: interp ?? Math.max(Math.floor(sampleSize / 64), 1),
    useAdditionalConditions: useAc, captionChannels,
  };
}

export class PixArtTransformer2DModel extends Module {
  readonly pos_embed: PatchEmbed;
  readonly transformer_blocks: ModuleList<BasicTransformerBlock>;
  readonly norm_out: LayerNorm;
  readonly scale_shift_table: Parameter;
  readonly proj_out: Linear;
  readonly adaln_single: AdaLayerNormSingle;
  readonly caption_projection?: PixArtAlphaTextProjection;
  readonly innerDim: number;

  constructor(readonly config: PixArtTransformerConfig) {
    super();
    const c = config;
    const d = c.numAttentionHeads * c.attentionHeadDim;
    this.innerDim = d;
    this.pos_embed = this.child('pos_embed', new PatchEmbed(c.sampleSize, c.patchSize, c.inChannels, d, c.interpolationScale));
    const blocks: BasicTransformerBlock[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      blocks.push(new BasicTransformerBlock({
        dim: d, numAttentionHeads: c.numAttentionHeads, attentionHeadDim: c.attentionHeadDim,
        crossAttentionDim: c.crossAttentionDim, activationFn: c.activationFn, attentionBias: c.attentionBias,
        onlyCrossAttention: c.onlyCrossAttention, upcastAttention: c.upcastAttention, normType: 'ada_norm_single',
        normElementwiseAffine: c.normElementwiseAffine, normEps: c.normEps,
      }));
    }
    this.transformer_blocks = this.child('transformer_blocks', new ModuleList(blocks));
    this.norm_out = this.child('norm_out', new LayerNorm(d, 1e-6, false));
    this.scale_shift_table = this.param('scale_shift_table', [2, d]);
    this.proj_out = this.child('proj_out', new Linear(d, c.patchSize * c.patchSize * c.outChannels));
    this.adaln_single = this.child('adaln_single', new AdaLayerNormSingle(d, c.useAdditionalConditions));
    if (c.captionChannels != null) this.caption_projection = this.child('caption_projection', new PixArtAlphaTextProjection(c.captionChannels, d));
  }

  /**
   * Validates a diffusers config (`PixArtTransformer2DModel`, or `Transformer2DModel` with norm_type
   * "ada_norm_single", whose defaults differ) and builds the model without allocating weights.
   */
  static fromConfig(cfg: Record<string, unknown>, file?: string): PixArtTransformer2DModel {
    return checkParameterCount(new PixArtTransformer2DModel(resolvePixArtConfig(cfg, file)), 'PixArtTransformer2DModel', file);
  }

  /** Loads a diffusers `transformer/` folder. */
  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<PixArtTransformer2DModel> {
    return buildAndLoad(dir, (c, file) => PixArtTransformer2DModel.fromConfig(c, file), opts);
  }

  /** Flattens a per-sample condition to B·n values, broadcasting a single row to the batch. */
  private condition(v: tf.Tensor | number[] | number[][] | null | undefined, n: number, b: number, name: string): number[] {
    if (v == null) throw new Error(`PixArtTransformer2DModel: ${name} is required (use_additional_conditions is true)`);
    const flat = v instanceof tf.Tensor ? Array.from(v.dataSync()) : (v as (number | number[])[]).flat();
    if (flat.length === n) return Array.from({ length: b }, () => flat).flat();
    if (flat.length !== n * b) throw new Error(`PixArtTransformer2DModel: ${name} must hold ${n} value(s) per sample ([${b}, ${n}]), got ${flat.length}`);
    return flat;
  }

  private checkInputs(o: PixArtForwardOptions): void {
    const c = this.config;
    const x = o.hiddenStates;
    if (x.rank !== 4 || x.shape[1] !== c.inChannels || x.shape[2]! % c.patchSize || x.shape[3]! % c.patchSize) {
      throw new Error(`PixArtTransformer2DModel: hiddenStates must be NCHW [B, ${c.inChannels}, H, W] with H, W multiples of ${c.patchSize}, got [${x.shape}]`);
    }
    const b = x.shape[0];
    const e = o.encoderHiddenStates;
    const encDim = c.captionChannels ?? c.crossAttentionDim;
    if (e.rank !== 3 || e.shape[0] !== b || e.shape[2] !== encDim) {
      throw new Error(`PixArtTransformer2DModel: encoderHiddenStates must be [${b}, L, ${encDim}], got [${e.shape}]`);
    }
    const m = o.encoderAttentionMask;
    if (m && !((m.rank === 2 && m.shape[0] === b && m.shape[1] === e.shape[1]) || (m.rank === 3 && m.shape[0] === b && m.shape[1] === 1 && m.shape[2] === e.shape[1]))) {
      throw new Error(`PixArtTransformer2DModel: encoderAttentionMask must be [${b}, ${e.shape[1]}] (or a bias [${b}, 1, ${e.shape[1]}]), got [${m.shape}]`);
    }
  }

  /** Predicts noise (and the learned variance channels) for latents at `timestep`; returns NCHW [B, out_channels, H, W]. */
  forward(o: PixArtForwardOptions): tf.Tensor4D {
    this.checkInputs(o);
    const c = this.config;
    const [b, , hh, ww] = o.hiddenStates.shape;
    const ts = timestepsToArray(o.timestep, b);
    const res = c.useAdditionalConditions ? this.condition(o.resolution, 2, b, 'resolution') : null;
    const ar = c.useAdditionalConditions ? this.condition(o.aspectRatio, 1, b, 'aspectRatio') : null;
    const ctx = o.attnContext ?? {};
    const record = o.record;
    const run = () => tf.tidy(() => {
      const p = c.patchSize;
      const gh = hh / p;
      const gw = ww / p;
      const d = this.innerDim;
      let h: tf.Tensor = this.pos_embed.forward(o.hiddenStates.transpose([0, 2, 3, 1]) as tf.Tensor4D);
      record?.('pos_embed', h);
      const [t, embedded] = this.adaln_single.forward(ts, res, ar);
      record?.('adaln_single', t);
      let enc = o.encoderHiddenStates;
      if (this.caption_projection) {
        enc = this.caption_projection.forward(enc).reshape([b, -1, d]);
        record?.('caption_projection', enc);
      }
      const bias = o.encoderAttentionMask ? maskToBias(o.encoderAttentionMask) : null;
      this.transformer_blocks.items.forEach((blk, i) => {
        h = blk.forward(h, enc, bias, ctx, t);
        record?.(`transformer_blocks.${i}`, h);
      });
      const [shift, scale] = tf.split(tf.add(this.scale_shift_table.t.expandDims(0), embedded.expandDims(1)), 2, 1);
      h = tf.add(tf.mul(this.norm_out.forward(h), tf.add(scale, 1)), shift);
      h = this.proj_out.forward(h);
      record?.('proj_out', h);
      const oc = c.outChannels;
      // unpatchify: [B, gh·gw, p·p·C] → [B, gh, p, gw, p, C] → NHWC → NCHW
      return h.reshape([b, gh, gw, p, p, oc]).transpose([0, 1, 3, 2, 4, 5]).reshape([b, hh, ww, oc]).transpose([0, 3, 1, 2]) as tf.Tensor4D;
    });
    return record ? withRecordedAttention(this, record, run) : run();
  }

  attnProcessors(): Map<string, AttnProcessor> { return attnProcessors(this); }
  setAttnProcessor(p: AttnProcessor | Record<string, AttnProcessor>): void { setAttnProcessor(this, p); }
}
