/** `--lora FILE[:scale]` (generate and forward) and the LoRA file prefix of one model (forward). */
import type { Module } from '../nn/module.js';

export interface LoraArg { source: string; scale: number }

/**
 * Splits `FILE[:scale]` at its last ':' only when what follows parses as a number, so URLs
 * (`https://host:8080/x.safetensors`) and Windows paths (`C:\loras\x.safetensors`) stay whole.
 */
export function parseLoraArg(arg: string): LoraArg {
  const i = arg.lastIndexOf(':');
  const suffix = i >= 0 ? arg.slice(i + 1) : '';
  const scale = suffix.trim() === '' ? NaN : Number(suffix);
  if (i > 0 && Number.isFinite(scale)) return { source: arg.slice(0, i), scale };
  return { source: arg, scale: 1 };
}

/** The prefix of a LoRA file's keys that belong to a model of this class (diffusers' component names). */
const PREFIX_BY_CLASS: Record<string, string> = {
  UNet2DConditionModel: 'unet', PixArtTransformer2DModel: 'transformer', CLIPTextModelWithProjection: 'text_encoder_2',
  CLIPTextModel: 'text_encoder', T5EncoderModel: 'text_encoder',
};

/** The LoRA prefix `tgate forward --lora` applies to `model`: `--lora-prefix` if given, else by its class. */
export function loraPrefix(model: Module, given?: string): string {
  if (given) return given;
  const cls = model.constructor.name;
  const prefix = PREFIX_BY_CLASS[cls];
  if (!prefix) throw new Error(`--lora: ${cls} has no LoRA component prefix of its own; name the file's prefix with --lora-prefix`);
  return prefix;
}
