/**
 * UNet2DConditionModel's config.json: diffusers v0.30.3's keys and defaults, checked and expanded to one
 * entry per block. Options diffusers has but no SD-1.5 / SD-2.1 / SDXL / LCM checkpoint uses are rejected by
 * name rather than silently ignored.
 */
import { ConfigReader, LIMITS, rule } from '../io/config.js';
import { ACTIVATION_NAMES } from '../layers/activations.js';

/** The config after defaults and per-block expansion (one entry per down block, in down order). */
export interface UNet2DConditionConfig {
  /** Default latent height/width (diffusers sample_size; the first entry when it is [h, w]). */
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: string[];
  midBlockType: 'UNetMidBlock2DCrossAttn' | null;
  upBlockTypes: string[];
  blockOutChannels: number[];
  layersPerBlock: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  actFn: string;
  normNumGroups: number;
  normEps: number;
  crossAttentionDim: number[];
  transformerLayersPerBlock: (number | number[])[];
  /** Per up block, in up order. */
  reverseTransformerLayersPerBlock: (number | number[])[];
  numAttentionHeads: number[];
  onlyCrossAttention: boolean[];
  useLinearProjection: boolean;
  upcastAttention: boolean;
  resnetTimeScaleShift: 'default' | 'scale_shift';
  resnetOutScaleFactor: number;
  timeEmbeddingDim: number | null;
  timeEmbeddingActFn: string | null;
  timeCondProjDim: number | null;
  convInKernel: number;
  convOutKernel: number;
  additionEmbedType: 'text_time' | null;
  additionTimeEmbedDim: number | null;
  projectionClassEmbeddingsInputDim: number | null;
}

const CLS = 'UNet2DConditionModel';
const DOWN_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'];
/** Transformer layers of a block: one count, or one per resnet layer. */
const LAYERS = rule.either(rule.int(1, LIMITS.layersPerBlock), rule.list(rule.int(1, LIMITS.layersPerBlock), 1, LIMITS.layersPerBlock));
const WIDTH = rule.int(1, LIMITS.width);

/** Options this implementation does not have, each pinned to the value that means "off". */
const ONLY_OFF: [key: string, off: unknown][] = [
  ['class_embed_type', null], ['num_class_embeds', null], ['class_embeddings_concat', false], ['encoder_hid_dim', null],
  ['encoder_hid_dim_type', null], ['dual_cross_attention', false], ['attention_type', 'default'],
  ['time_embedding_type', 'positional'], ['timestep_post_act', null],
];

/** Validates a diffusers config.json and fills diffusers' defaults; errors name `file`, the class and the key. */
export function resolveUNetConfig(raw: Record<string, unknown>, file?: string): UNet2DConditionConfig {
  const r = ConfigReader.of(raw, CLS, file);
  r.oneOf('_class_name', [CLS], { default: CLS });
  for (const [key, off] of ONLY_OFF) r.oneOf(key, [off], { default: off });
  const down = r.list<string>('down_block_types', rule.oneOf(DOWN_TYPES), {
    default: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], minLength: 1, maxLength: LIMITS.blocks,
  });
  const n = down.length;
  const up = r.list<string>('up_block_types', rule.oneOf(UP_TYPES), {
    default: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'], minLength: n, maxLength: n,
  });
  const blockOutChannels = r.list<number>('block_out_channels', WIDTH, { default: [320, 640, 1280, 1280], minLength: n, maxLength: n });

  const actFn = r.oneOf('act_fn', ACTIVATION_NAMES, { default: 'silu' });
  const timeEmbeddingActFn = r.get('time_embedding_act_fn', rule.oneOf(ACTIVATION_NAMES), { default: null, nullable: true }) as string | null;
  // null means "no conv_norm_out" in diffusers, a variant no released checkpoint uses.
  const normNumGroups = r.int('norm_num_groups', { default: 32, min: 1, max: LIMITS.width });
  const additionEmbedType = r.oneOf<'text_time' | null>('addition_embed_type', [null, 'text_time'], { default: null });
  const textTime = additionEmbedType === 'text_time';
  // Required with "text_time" (SDXL), ignored otherwise.
  const additionTimeEmbedDim = textTime ? r.int('addition_time_embed_dim', { min: 1, max: LIMITS.width }) : null;
  const projectionDim = textTime ? r.int('projection_class_embeddings_input_dim', { min: 1, max: LIMITS.innerWidth }) : null;
  const kernel = (key: string): number => {
    const k = r.int(key, { default: 3, min: 1, max: 31 });
    if (k % 2 === 0) throw r.fail(key, 'is not supported (supported: an odd kernel size)');
    return k;
  };

  // diffusers' legacy naming: attention_head_dim is the number of heads unless num_attention_heads is given.
  const headsKey = raw.num_attention_heads != null ? 'num_attention_heads' : 'attention_head_dim';
  const transformerLayersPerBlock = r.perBlock<number | number[]>('transformer_layers_per_block', LAYERS, n, { default: 1 });
  let reverse: (number | number[])[];
  if (raw.reverse_transformer_layers_per_block != null) {
    reverse = r.perBlock<number | number[]>('reverse_transformer_layers_per_block', LAYERS, n);
  } else {
    if (transformerLayersPerBlock.some(Array.isArray)) {
      throw r.fail('reverse_transformer_layers_per_block', 'is not supported: give a per-block list when transformer_layers_per_block is asymmetrical', null);
    }
    reverse = [...transformerLayersPerBlock].reverse();
  }
  const size = r.get('sample_size', rule.either(rule.int(1, LIMITS.latentSize), rule.list(rule.int(1, LIMITS.latentSize), 2, 2)), { default: 64 });
  const nullableInt = (key: string, max: number): number | null => r.int(key, { default: null, nullable: true, min: 1, max });
  return {
    sampleSize: Array.isArray(size) ? size[0] : size as number,
    inChannels: r.int('in_channels', { default: 4, min: 1, max: LIMITS.channels }),
    outChannels: r.int('out_channels', { default: 4, min: 1, max: LIMITS.channels }),
    centerInputSample: r.bool('center_input_sample', { default: false }),
    flipSinToCos: r.bool('flip_sin_to_cos', { default: true }),
    freqShift: r.number('freq_shift', { default: 0 }),
    downBlockTypes: down,
    midBlockType: r.oneOf<'UNetMidBlock2DCrossAttn' | null>('mid_block_type', ['UNetMidBlock2DCrossAttn', null], { default: 'UNetMidBlock2DCrossAttn' }),
    upBlockTypes: up,
    blockOutChannels,
    layersPerBlock: r.perBlock<number>('layers_per_block', rule.int(1, LIMITS.layersPerBlock), n, { default: 2 }),
    downsamplePadding: r.int('downsample_padding', { default: 1, min: 0, max: 16 }),
    // Outputs are divided by these two: 0 would give infinities instead of an error.
    midBlockScaleFactor: r.number('mid_block_scale_factor', { default: 1, above: 0 }),
    actFn,
    normNumGroups,
    normEps: r.number('norm_eps', { default: 1e-5, above: 0 }),
    crossAttentionDim: r.perBlock<number>('cross_attention_dim', WIDTH, n, { default: 1280 }),
    transformerLayersPerBlock,
    reverseTransformerLayersPerBlock: reverse,
    numAttentionHeads: r.perBlock<number>(headsKey, rule.int(1, LIMITS.heads), n, { default: 8 }),
    onlyCrossAttention: r.perBlock<boolean>('only_cross_attention', rule.bool(), n, { default: false }),
    useLinearProjection: r.bool('use_linear_projection', { default: false }),
    upcastAttention: r.bool('upcast_attention', { default: false }),
    resnetTimeScaleShift: r.oneOf<'default' | 'scale_shift'>('resnet_time_scale_shift', ['default', 'scale_shift'], { default: 'default' }),
    resnetOutScaleFactor: r.number('resnet_out_scale_factor', { default: 1, above: 0 }),
    timeEmbeddingDim: nullableInt('time_embedding_dim', LIMITS.innerWidth),
    timeEmbeddingActFn,
    timeCondProjDim: nullableInt('time_cond_proj_dim', LIMITS.width),
    convInKernel: kernel('conv_in_kernel'),
    convOutKernel: kernel('conv_out_kernel'),
    additionEmbedType,
    additionTimeEmbedDim,
    projectionClassEmbeddingsInputDim: projectionDim,
  };
}
