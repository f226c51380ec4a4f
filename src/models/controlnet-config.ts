/**
 * ControlNetModel's config.json: diffusers v0.30.3's keys and defaults. The down path and SDXL's text-time
 * embedding are read by the UNet's functions (same keys, same meaning); what differs is read here:
 * `layers_per_block` and `cross_attention_dim` are single numbers, and the conditioning embedding's keys.
 */
import { ConfigReader, LIMITS } from '../io/config.js';
import {
  WIDTH, readDownBlockTypes, readDownPath, readTextTime, requireOff, type DownPathConfig, type TextTimeConfig,
} from './unet-2d-condition-config.js';

export interface ControlNetConfig extends DownPathConfig, TextTimeConfig {
  inChannels: number;
  /** Channels of the conditioning image (3: RGB). */
  conditioningChannels: number;
  flipSinToCos: boolean;
  freqShift: number;
  /** UNetMidBlock2D: one resnet, no attention. */
  midBlockType: 'UNetMidBlock2DCrossAttn' | 'UNetMidBlock2D';
  /** Widths of the conditioning embedding's convolutions; each step after the first halves the resolution. */
  conditioningEmbeddingOutChannels: number[];
  /** "bgr": the conditioning image's channels are reversed first. */
  channelOrder: 'rgb' | 'bgr';
  /** Outputs averaged over H and W (ControlNet "shuffle"-style models). */
  globalPoolConditions: boolean;
}

const CLS = 'ControlNetModel';

/** Validates a ControlNetModel config.json and fills diffusers' defaults; errors name `file`, the class and the key. */
export function resolveControlNetConfig(raw: Record<string, unknown>, file?: string): ControlNetConfig {
  const r = ConfigReader.of(raw, CLS, file);
  r.oneOf('_class_name', [CLS], { default: CLS });
  requireOff(r, [['class_embed_type', null], ['num_class_embeds', null], ['encoder_hid_dim', null], ['encoder_hid_dim_type', null]]);
  const down = readDownBlockTypes(r);
  const n = down.length;
  const layers = r.int('layers_per_block', { default: 2, min: 1, max: LIMITS.layersPerBlock });
  const cross = r.get('cross_attention_dim', WIDTH, { default: 1280 }) as number;
  const path = readDownPath(r, raw, down, { layersPerBlock: new Array<number>(n).fill(layers), crossAttentionDim: new Array<number>(n).fill(cross), resnetOutScaleFactor: 1 });
  // Read for validity only: it sizes the "text" addition embedding, which is not supported.
  r.int('addition_embed_type_num_heads', { default: 64, min: 1, max: LIMITS.heads });
  return {
    ...path,
    ...readTextTime(r),
    inChannels: r.int('in_channels', { default: 4, min: 1, max: LIMITS.channels }),
    conditioningChannels: r.int('conditioning_channels', { default: 3, min: 1, max: LIMITS.channels }),
    flipSinToCos: r.bool('flip_sin_to_cos', { default: true }),
    freqShift: r.number('freq_shift', { default: 0 }),
    midBlockType: r.oneOf<'UNetMidBlock2DCrossAttn' | 'UNetMidBlock2D'>('mid_block_type', ['UNetMidBlock2DCrossAttn', 'UNetMidBlock2D'], { default: 'UNetMidBlock2DCrossAttn' }),
    conditioningEmbeddingOutChannels: r.list<number>('conditioning_embedding_out_channels', WIDTH, { default: [16, 32, 96, 256], minLength: 1, maxLength: LIMITS.blocks }),
    channelOrder: r.oneOf<'rgb' | 'bgr'>('controlnet_conditioning_channel_order', ['rgb', 'bgr'], { default: 'rgb' }),
    globalPoolConditions: r.bool('global_pool_conditions', { default: false }),
  };
}

/** The UNet config keys `ControlNetModel.from_unet` copies (diffusers v0.30.3). */
const FROM_UNET_KEYS = [
  'encoder_hid_dim', 'encoder_hid_dim_type', 'addition_embed_type', 'addition_time_embed_dim', 'transformer_layers_per_block', 'in_channels',
  'flip_sin_to_cos', 'freq_shift', 'down_block_types', 'only_cross_attention', 'block_out_channels', 'layers_per_block', 'downsample_padding',
  'mid_block_scale_factor', 'act_fn', 'norm_num_groups', 'norm_eps', 'cross_attention_dim', 'attention_head_dim', 'num_attention_heads',
  'use_linear_projection', 'class_embed_type', 'num_class_embeds', 'upcast_attention', 'resnet_time_scale_shift',
  'projection_class_embeddings_input_dim', 'mid_block_type',
];

/**
 * The config.json of diffusers' `ControlNetModel.from_unet(unet)`: the UNet config's down-path keys (a key the
 * UNet's config.json omits takes ControlNetModel's default) and the conditioning embedding's settings. The
 * ControlNet that fits a UNet, e.g. for benchmarks and tests; the weights are the caller's.
 */
export function controlnetConfigFromUnet(
  unet: Record<string, unknown>, o: { conditioningEmbeddingOutChannels?: number[]; conditioningChannels?: number; channelOrder?: 'rgb' | 'bgr' } = {},
): Record<string, unknown> {
  return {
    _class_name: CLS,
    ...Object.fromEntries(FROM_UNET_KEYS.filter((k) => Object.hasOwn(unet, k)).map((k) => [k, unet[k]])),
    controlnet_conditioning_channel_order: o.channelOrder ?? 'rgb',
    conditioning_embedding_out_channels: o.conditioningEmbeddingOutChannels ?? [16, 32, 96, 256],
    conditioning_channels: o.conditioningChannels ?? 3,
  };
}
