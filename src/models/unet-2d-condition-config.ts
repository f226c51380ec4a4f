/**
 * UNet2DConditionModel's config.json: diffusers v0.30.3's keys and defaults, checked and expanded to one
 * entry per block. Options diffusers has but no SD-1.5 / SD-2.1 / SDXL / LCM checkpoint uses are rejected by
 * name rather than silently ignored. The keys of the down path and of SDXL's text-time embedding are read
 * by functions ControlNetModel's config shares (models/controlnet-config.ts).
 */
import { ConfigReader, LIMITS, rule } from '../io/config.js';
import { ACTIVATION_NAMES } from '../layers/activations.js';

/**
 * The settings the down path and the mid block are built from (models/unet-blocks.ts), one entry per down
 * block: shared by UNet2DConditionModel and ControlNetModel, which read them from the same keys.
 */
export interface DownPathConfig {
  downBlockTypes: string[];
  blockOutChannels: number[];
  layersPerBlock: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  actFn: string;
  normNumGroups: number;
  normEps: number;
  crossAttentionDim: number[];
  transformerLayersPerBlock: (number | number[])[];
  numAttentionHeads: number[];
  onlyCrossAttention: boolean[];
  useLinearProjection: boolean;
  upcastAttention: boolean;
  resnetTimeScaleShift: 'default' | 'scale_shift';
  resnetOutScaleFactor: number;
}

/** addition_embed_type: none, or SDXL's `text_time` (pooled text embeddings + micro-conditioning ids). */
export interface TextTimeConfig {
  additionEmbedType: 'text_time' | null;
  additionTimeEmbedDim: number | null;
  projectionClassEmbeddingsInputDim: number | null;
}

/** The config after defaults and per-block expansion (one entry per down block, in down order). */
export interface UNet2DConditionConfig extends DownPathConfig, TextTimeConfig {
  /** Default latent height/width (diffusers sample_size; the first entry when it is [h, w]). */
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  midBlockType: 'UNetMidBlock2DCrossAttn' | null;
  upBlockTypes: string[];
  /** Per up block, in up order. */
  reverseTransformerLayersPerBlock: (number | number[])[];
  timeEmbeddingDim: number | null;
  timeEmbeddingActFn: string | null;
  timeCondProjDim: number | null;
  convInKernel: number;
  convOutKernel: number;
}

const CLS = 'UNet2DConditionModel';
const DOWN_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'];
/** Transformer layers of a block: one count, or one per resnet layer. */
const LAYERS = rule.either(rule.int(1, LIMITS.layersPerBlock), rule.list(rule.int(1, LIMITS.layersPerBlock), 1, LIMITS.layersPerBlock));
export const WIDTH = rule.int(1, LIMITS.width);

/** Options this implementation does not have, each pinned to the value that means "off". */
const ONLY_OFF: [key: string, off: unknown][] = [
  ['class_embed_type', null], ['num_class_embeds', null], ['class_embeddings_concat', false], ['encoder_hid_dim', null],
  ['encoder_hid_dim_type', null], ['dual_cross_attention', false], ['attention_type', 'default'],
  ['time_embedding_type', 'positional'], ['timestep_post_act', null],
];

/** Reads `keys`, each of which must hold the value that means "off" (absent = off). */
export function requireOff(r: ConfigReader, keys: readonly [key: string, off: unknown][]): void {
  for (const [key, off] of keys) r.oneOf(key, [off], { default: off });
}

/** down_block_types (UNet2DConditionModel's and ControlNetModel's default: three cross-attention blocks, one plain). */
export function readDownBlockTypes(r: ConfigReader): string[] {
  return r.list<string>('down_block_types', rule.oneOf(DOWN_TYPES), {
    default: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], minLength: 1, maxLength: LIMITS.blocks,
  });
}

/**
 * The down-path keys both classes read alike. `layersPerBlock`, `crossAttentionDim` and `resnetOutScaleFactor`
 * come from the caller: the UNet takes per-block lists there, the ControlNet one number.
 */
export function readDownPath(
  r: ConfigReader, raw: Record<string, unknown>, down: string[],
  own: Pick<DownPathConfig, 'layersPerBlock' | 'crossAttentionDim' | 'resnetOutScaleFactor'>,
): DownPathConfig {
  const n = down.length;
  // diffusers' legacy naming: attention_head_dim is the number of heads unless num_attention_heads is given.
  const headsKey = raw.num_attention_heads != null ? 'num_attention_heads' : 'attention_head_dim';
  return {
    ...own,
    downBlockTypes: down,
    blockOutChannels: r.list<number>('block_out_channels', WIDTH, { default: [320, 640, 1280, 1280], minLength: n, maxLength: n }),
    downsamplePadding: r.int('downsample_padding', { default: 1, min: 0, max: 16 }),
    // Outputs are divided by these two: 0 would give infinities instead of an error.
    midBlockScaleFactor: r.number('mid_block_scale_factor', { default: 1, above: 0 }),
    actFn: r.oneOf('act_fn', ACTIVATION_NAMES, { default: 'silu' }),
    // null means "no conv_norm_out" in diffusers, a variant no released checkpoint uses.
    normNumGroups: r.int('norm_num_groups', { default: 32, min: 1, max: LIMITS.width }),
    normEps: r.number('norm_eps', { default: 1e-5, above: 0 }),
    transformerLayersPerBlock: r.perBlock<number | number[]>('transformer_layers_per_block', LAYERS, n, { default: 1 }),
    numAttentionHeads: r.perBlock<number>(headsKey, rule.int(1, LIMITS.heads), n, { default: 8 }),
    onlyCrossAttention: r.perBlock<boolean>('only_cross_attention', rule.bool(), n, { default: false }),
    useLinearProjection: r.bool('use_linear_projection', { default: false }),
    upcastAttention: r.bool('upcast_attention', { default: false }),
    resnetTimeScaleShift: r.oneOf<'default' | 'scale_shift'>('resnet_time_scale_shift', ['default', 'scale_shift'], { default: 'default' }),
  };
}

/** addition_embed_type and, with "text_time" (SDXL), its two required sizes. */
export function readTextTime(r: ConfigReader): TextTimeConfig {
  const additionEmbedType = r.oneOf<'text_time' | null>('addition_embed_type', [null, 'text_time'], { default: null });
  const textTime = additionEmbedType === 'text_time';
  return {
    additionEmbedType,
    additionTimeEmbedDim: textTime ? r.int('addition_time_embed_dim', { min: 1, max: LIMITS.width }) : null,
    projectionClassEmbeddingsInputDim: textTime ? r.int('projection_class_embeddings_input_dim', { min: 1, max: LIMITS.innerWidth }) : null,
  };
}

/** Validates a diffusers config.json and fills diffusers' defaults; errors name `file`, the class and the key. */
export function resolveUNetConfig(raw: Record<string, unknown>, file?: string): UNet2DConditionConfig {
  const r = ConfigReader.of(raw, CLS, file);
  r.oneOf('_class_name', [CLS], { default: CLS });
  requireOff(r, ONLY_OFF);
  const down = readDownBlockTypes(r);
  const n = down.length;
  const up = r.list<string>('up_block_types', rule.oneOf(UP_TYPES), {
    default: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'], minLength: n, maxLength: n,
  });
  const path = readDownPath(r, raw, down, {
    layersPerBlock: r.perBlock<number>('layers_per_block', rule.int(1, LIMITS.layersPerBlock), n, { default: 2 }),
    crossAttentionDim: r.perBlock<number>('cross_attention_dim', WIDTH, n, { default: 1280 }),
    resnetOutScaleFactor: r.number('resnet_out_scale_factor', { default: 1, above: 0 }),
  });
  const timeEmbeddingActFn = r.get('time_embedding_act_fn', rule.oneOf(ACTIVATION_NAMES), { default: null, nullable: true }) as string | null;
  const kernel = (key: string): number => {
    const k = r.int(key, { default: 3, min: 1, max: 31 });
    if (k % 2 === 0) throw r.fail(key, 'is not supported (supported: an odd kernel size)');
    return k;
  };

  let reverse: (number | number[])[];
  if (raw.reverse_transformer_layers_per_block != null) {
    reverse = r.perBlock<number | number[]>('reverse_transformer_layers_per_block', LAYERS, n);
  } else {
    if (path.transformerLayersPerBlock.some(Array.isArray)) {
      throw r.fail('reverse_transformer_layers_per_block', 'is not supported: give a per-block list when transformer_layers_per_block is asymmetrical', null);
    }
    reverse = [...path.transformerLayersPerBlock].reverse();
  }
  const size = r.get('sample_size', rule.either(rule.int(1, LIMITS.latentSize), rule.list(rule.int(1, LIMITS.latentSize), 2, 2)), { default: 64 });
  const nullableInt = (key: string, max: number): number | null => r.int(key, { default: null, nullable: true, min: 1, max });
  return {
    ...path,
    ...readTextTime(r),
    sampleSize: Array.isArray(size) ? size[0] : size as number,
    inChannels: r.int('in_channels', { default: 4, min: 1, max: LIMITS.channels }),
    outChannels: r.int('out_channels', { default: 4, min: 1, max: LIMITS.channels }),
    centerInputSample: r.bool('center_input_sample', { default: false }),
    flipSinToCos: r.bool('flip_sin_to_cos', { default: true }),
    freqShift: r.number('freq_shift', { default: 0 }),
    midBlockType: r.oneOf<'UNetMidBlock2DCrossAttn' | null>('mid_block_type', ['UNetMidBlock2DCrossAttn', null], { default: 'UNetMidBlock2DCrossAttn' }),
    upBlockTypes: up,
    reverseTransformerLayersPerBlock: reverse,
    timeEmbeddingDim: nullableInt('time_embedding_dim', LIMITS.innerWidth),
    timeEmbeddingActFn,
    timeCondProjDim: nullableInt('time_cond_proj_dim', LIMITS.width),
    convInKernel: kernel('conv_in_kernel'),
    convOutKernel: kernel('conv_out_kernel'),
  };
}
