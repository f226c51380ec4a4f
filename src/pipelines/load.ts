/**
 * `loadPipeline(dirOrUrl)`: reads model_index.json, builds each component from its folder and returns the
 * pipeline class it names. A diffusers folder (Node) or a folder written by `tgate convert` (Node path or
 * http(s) URL). Nothing is fetched but the location given.
 */
import type { Module } from '../nn/module.js';
import { readModelIndex } from '../io/component-source.js';
import { loadModel } from '../models/load.js';
import type { OffloadOptions } from '../nn/offload.js';
import type { WeightDtype } from '../nn/packed-weight.js';
import { joinLocation, readJsonAt } from '../io/location.js';
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
  /** For URLs: a fetch to use, shard download progress, Cache API use (see TfjsOpenOptions). */
  fetch?: typeof fetch;
  cache?: boolean;
  /**
   * Weight offload for every model component (denoiser, VAE, text encoders): weights are read into JS memory
   * and each unit's are uploaded only while it runs (see nn/offload.ts); `true` = 512 MiB units. Outputs are
   * unchanged; each forward pays one upload of the weights it uses. For models beyond the backend's memory.
   */
  offload?: boolean | OffloadOptions;
  /**
   * 'float16': every model component's Linear, Conv2d and Embedding weights held as packed halves, read
   * with f32 arithmetic (half the weight memory; WebGPU only, an error elsewhere). A converted
   * `--quantize float16` folder uploads its bytes as they are. Not with `offload`.
   */
  weightDtype?: WeightDtype;
}

const PIPELINES: Record<string, string[]> = {
  StableDiffusionPipeline: ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
  StableDiffusionXLPipeline: ['unet', 'vae', 'text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'scheduler'],
  PixArtAlphaPipeline: ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
  PixArtSigmaPipeline: ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
};

/** Loads a diffusers pipeline folder and returns the pipeline class its model_index.json names. */
export async function loadPipeline(dir: string, opts: LoadOptions = {}): Promise<Pipeline> {
  const indexFile = joinLocation(dir, 'model_index.json');
  let index: Record<string, unknown>;
  try {
    index = await readModelIndex(dir, { fetch: opts.fetch });
  } catch (e) {
    throw new Error(`${dir} is not a pipeline folder: ${(e as Error).message}`);
  }
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
      const sub = joinLocation(dir, name);
      if (name.startsWith('tokenizer')) parts[name] = await loadTokenizer(sub);
      else if (name === 'scheduler') {
        const sc = await readJsonAt(sub, 'scheduler_config.json', opts.fetch);
        if (!sc) throw new Error(`${dir}: component "scheduler" has no ${joinLocation(sub, 'scheduler_config.json')}`);
        parts[name] = schedulerFromConfig(sc);
      } else {
        const m = await loadModel(sub, { variant: opts.variant, fetch: opts.fetch, cache: opts.cache, offload: opts.offload, weightDtype: opts.weightDtype });
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
