/**
 * `loadPipeline(dir)`: reads model_index.json, builds each component from its folder and returns the
 * pipeline class it names. Nothing is downloaded: every file comes from the folder given.
 */
import path from 'node:path';
import type { Module } from '../nn/module.js';
import { modelFromConfig } from '../models/registry.js';
import { readComponentConfig, readJson, exists, openComponentWeights } from '../io/diffusers-folder.js';
import { loadTokenizer } from '../tokenizers/index.js';
import { schedulerFromConfig } from '../samplers/index.js';
import type { CLIPTokenizer, T5Tokenizer } from '../tokenizers/index.js';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text.js';
import type { T5EncoderModel } from '../models/t5-encoder.js';
import type { PixArtTransformer2DModel } from '../models/pixart-transformer.js';
import { StableDiffusionPipeline } from './stable-diffusion.js';
import { StableDiffusionXLPipeline } from './stable-diffusion-xl.js';
import { PixArtAlphaPipeline } from './pixart-alpha.js';

export type Pipeline = StableDiffusionPipeline | StableDiffusionXLPipeline | PixArtAlphaPipeline;

export interface LoadOptions {
  /** Weight variant, e.g. "fp16" (diffusion_pytorch_model.fp16.safetensors). */
  variant?: string;
  /** Skip these components (e.g. ['text_encoder'] for PixArt with precomputed embeddings). */
  skip?: string[];
  /** Progress per component: name, index, count. */
  onProgress?: (component: string, index: number, total: number) => void;
}

/** Builds a model from `<dir>/config.json` and loads its weights (strict key and shape checks). */
export async function loadModel<M extends Module = Module>(dir: string, variant?: string): Promise<M> {
  const model = modelFromConfig(await readComponentConfig(dir)) as M;
  const src = await openComponentWeights(dir, variant);
  try {
    await model.loadStateDict(src);
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await src.close();
  }
  return model;
}

const PIPELINES: Record<string, string[]> = {
  StableDiffusionPipeline: ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
  StableDiffusionXLPipeline: ['unet', 'vae', 'text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'scheduler'],
  PixArtAlphaPipeline: ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
  PixArtSigmaPipeline: ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
};

/** Loads a diffusers pipeline folder and returns the pipeline class its model_index.json names. */
export async function loadPipeline(dir: string, opts: LoadOptions = {}): Promise<Pipeline> {
  const indexFile = path.join(dir, 'model_index.json');
  if (!(await exists(indexFile))) throw new Error(`${dir} is not a diffusers pipeline folder (no model_index.json)`);
  const index = await readJson<Record<string, unknown>>(indexFile);
  const cls = String(index._class_name);
  const names = PIPELINES[cls];
  if (!names) throw new Error(`${indexFile}: unsupported pipeline _class_name "${cls}" (supported: ${Object.keys(PIPELINES).join(', ')})`);
  const parts: Record<string, unknown> = {};
  const loaded: Module[] = [];
  try {
    for (const [i, name] of names.entries()) {
      opts.onProgress?.(name, i, names.length);
      const entry = index[name];
      const optional = cls.startsWith('PixArt') && (name === 'text_encoder' || name === 'tokenizer');
      if (opts.skip?.includes(name) || (optional && (entry == null || (Array.isArray(entry) && entry[0] == null)))) continue;
      const sub = path.join(dir, name);
      if (!(await exists(sub))) throw new Error(`${dir}: component "${name}" listed in model_index.json has no folder ${sub}`);
      if (name.startsWith('tokenizer')) parts[name] = await loadTokenizer(sub);
      else if (name === 'scheduler') parts[name] = schedulerFromConfig(await readJson(path.join(sub, 'scheduler_config.json')));
      else {
        const m = await loadModel(sub, opts.variant);
        loaded.push(m);
        parts[name] = m;
      }
    }
  } catch (e) {
    loaded.forEach((m) => m.dispose());
    throw e;
  }
  const common = { vae: parts.vae as AutoencoderKL, scheduler: parts.scheduler as ReturnType<typeof schedulerFromConfig> };
  if (cls === 'StableDiffusionPipeline') {
    return new StableDiffusionPipeline({
      ...common, unet: parts.unet as UNet2DConditionModel, textEncoder: parts.text_encoder as CLIPTextModel, tokenizer: parts.tokenizer as CLIPTokenizer,
    });
  }
  if (cls === 'StableDiffusionXLPipeline') {
    return new StableDiffusionXLPipeline({
      ...common, unet: parts.unet as UNet2DConditionModel, textEncoder: parts.text_encoder as CLIPTextModel, tokenizer: parts.tokenizer as CLIPTokenizer,
      textEncoder2: parts.text_encoder_2 as CLIPTextModelWithProjection, tokenizer2: parts.tokenizer_2 as CLIPTokenizer,
      forceZerosForEmptyPrompt: (index.force_zeros_for_empty_prompt as boolean | undefined) ?? true,
    });
  }
  return new PixArtAlphaPipeline({
    ...common, transformer: parts.transformer as PixArtTransformer2DModel,
    textEncoder: (parts.text_encoder as T5EncoderModel | undefined) ?? null, tokenizer: (parts.tokenizer as T5Tokenizer | undefined) ?? null,
  });
}
