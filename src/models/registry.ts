/**
 * diffusers/transformers `_class_name` → model constructor, so a component folder can be built from its
 * config.json alone. Each model family adds its class to {@link modelClasses}.
 */
import type { Module } from '../nn/module.js';
import { UNet2DConditionModel } from './unet-2d-condition.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from './clip-text.js';
import { T5EncoderModel } from './t5-encoder.js';
import { AutoencoderKL } from './autoencoder-kl.js';
import { PixArtTransformer2DModel } from './pixart-transformer.js';

export type ModelFactory = (cfg: Record<string, unknown>) => Module;

export const modelClasses = new Map<string, ModelFactory>([
  ['UNet2DConditionModel', (cfg) => UNet2DConditionModel.fromConfig(cfg)],
  ['CLIPTextModel', (cfg) => CLIPTextModel.fromConfig(cfg)],
  ['CLIPTextModelWithProjection', (cfg) => CLIPTextModelWithProjection.fromConfig(cfg)],
  ['T5EncoderModel', (cfg) => T5EncoderModel.fromConfig(cfg)],
  ['AutoencoderKL', (cfg) => AutoencoderKL.fromConfig(cfg)],
  ['PixArtTransformer2DModel', (cfg) => PixArtTransformer2DModel.fromConfig(cfg)],
  // The original PixArt-α release saves its transformer as Transformer2DModel (norm_type "ada_norm_single").
  ['Transformer2DModel', (cfg) => PixArtTransformer2DModel.fromConfig(cfg)],
]);

/** Builds (without weights) the model a config names by `_class_name`. */
export function modelFromConfig(cfg: Record<string, unknown>): Module {
  const name = String(cfg._class_name);
  const make = modelClasses.get(name);
  if (!make) throw new Error(`unknown _class_name "${name}" (supported: ${[...modelClasses.keys()].join(', ')})`);
  return make(cfg);
}

export { UNet2DConditionModel, CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel, AutoencoderKL, PixArtTransformer2DModel };
