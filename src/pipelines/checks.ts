/** Checks of the options every pipeline's `generate` shares, and the tokenizer truncation warning. */
import type * as tf from '@tensorflow/tfjs-core';
import type { TruncationReport } from '../tokenizers/index.js';
import { imageShape } from './images.js';

/** Checks height/width against the latent factor (VAE × patch) the model needs. */
export function checkSize(height: number, width: number, factor: number, what: string): void {
  for (const [k, v] of [['height', height], ['width', width]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % factor !== 0) {
      throw new Error(`${k} ${v} must be a positive multiple of ${factor} (${what})`);
    }
  }
}

/** Checks an embedding tensor's rank and width, naming the option. */
export function checkEmbeds(name: string, t: tf.Tensor | undefined, width: number, rank = 3): void {
  if (!t) return;
  if (t.rank !== rank || t.shape[rank - 1] !== width) {
    throw new Error(`${name} must have rank ${rank} with last dimension ${width}, got shape [${t.shape}]`);
  }
}

/** Prints a tokenizer truncation warning once per prompt (diffusers logs the same). */
export function warnTruncated(reports: TruncationReport[], warn: (msg: string) => void = console.warn): void {
  for (const r of reports) if (r.truncated) warn(`[tgate] ${r.message}`);
}

/** Steps and guidance checks shared by the pipelines. */
export function checkCommon(o: { numInferenceSteps?: number; guidanceScale?: number; guidanceRescale?: number; seed?: number; signal?: AbortSignal }): void {
  const signal = o.signal as Partial<AbortSignal> | undefined;
  if (signal !== undefined && (typeof signal?.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
    throw new Error(`signal must be an AbortSignal (e.g. new AbortController().signal), got ${signal === null ? 'null' : typeof signal}`);
  }
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed <= 0xffffffff)) {
    throw new Error(`seed must be an integer in 0…2^32−1, got ${o.seed}`);
  }
  if (o.numInferenceSteps !== undefined && (!Number.isInteger(o.numInferenceSteps) || o.numInferenceSteps < 1)) {
    throw new Error(`numInferenceSteps must be a positive integer, got ${o.numInferenceSteps}`);
  }
  if (o.guidanceScale !== undefined && !Number.isFinite(o.guidanceScale)) throw new Error(`guidanceScale must be a number, got ${o.guidanceScale}`);
  if (o.guidanceRescale !== undefined && !(o.guidanceRescale >= 0 && o.guidanceRescale <= 1)) {
    throw new Error(`guidanceRescale must be in [0, 1], got ${o.guidanceRescale}`);
  }
}

/** The largest latent batch (prompts × images per prompt) a generation accepts; bounds what it allocates. */
export const MAX_BATCH = 256;

/** `prompt` / `negativePrompt` as a list (a string is a list of one), or undefined; anything else is rejected. */
export function promptList(name: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((p) => typeof p === 'string')) return v as string[];
  const got = Array.isArray(v) ? (v.length === 0 ? 'an empty array' : 'an array with a non-string element') : typeof v;
  throw new Error(`${name} must be a string or a non-empty array of strings, got ${got}`);
}

/**
 * The prompt batch B: the prompt list's length or promptEmbeds' first dimension (exactly one of them is given),
 * and the negative prompts as a list of B (a single string applies to every prompt, as SDXL and PixArt in diffusers).
 */
export function promptBatch(o: { prompt?: unknown; negativePrompt?: unknown; promptEmbeds?: tf.Tensor; negativePromptEmbeds?: tf.Tensor }): {
  batch: number; prompts?: string[]; negatives?: string[];
} {
  const prompts = promptList('prompt', o.prompt);
  const negatives = promptList('negativePrompt', o.negativePrompt);
  if (prompts && o.promptEmbeds) throw new Error('give prompt or promptEmbeds, not both');
  if (!prompts && !o.promptEmbeds) throw new Error('give a prompt or promptEmbeds');
  if (negatives && o.negativePromptEmbeds) throw new Error('give negativePrompt or negativePromptEmbeds, not both');
  const batch = prompts ? prompts.length : o.promptEmbeds!.shape[0];
  if (o.negativePromptEmbeds && o.negativePromptEmbeds.shape[0] !== batch) {
    throw new Error(`negativePromptEmbeds has batch ${o.negativePromptEmbeds.shape[0]} but there are ${batch} prompts (promptEmbeds rows)`);
  }
  if (negatives && negatives.length !== 1 && negatives.length !== batch) {
    throw new Error(`negativePrompt has ${negatives.length} entries but there are ${batch} prompts (give one, or one per prompt)`);
  }
  return { batch, prompts, negatives: negatives && (negatives.length === batch ? negatives : new Array<string>(batch).fill(negatives[0])) };
}

/** numImagesPerPrompt (default 1) and the latent batch it makes with `batch` prompts. */
export function imagesPerPrompt(n: unknown, batch: number): number {
  const k = n ?? 1;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw new Error(`numImagesPerPrompt must be a positive integer, got ${JSON.stringify(n)}`);
  if (batch * k > MAX_BATCH) throw new Error(`${batch} prompts × ${k} images per prompt = ${batch * k} images, more than the ${MAX_BATCH} one generation allows`);
  return k;
}

/** diffusers' clip_skip: layers skipped from the end of CLIP, 0 … numLayers − `reserved`. */
export function checkClipSkip(v: unknown, numLayers: number, reserved: number): void {
  if (v === undefined) return;
  const max = numLayers - reserved;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new Error(`clipSkip must be an integer in 0…${max} (the text encoder has ${numLayers} layers), got ${JSON.stringify(v)}`);
  }
}

/**
 * Rejects options a pipeline does not know (a typo, or diffusers' snake_case name), so nothing is silently
 * ignored. Keys whose value is undefined are skipped.
 */
export function checkOptionKeys(o: object, known: readonly string[], pipeline: string): void {
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || known.includes(k)) continue;
    const camel = k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
    const hint = camel !== k && known.includes(camel) ? ` (did you mean ${camel}?)` : '';
    throw new Error(`${pipeline}.generate: unknown option "${k}"${hint}`);
  }
}

/**
 * Height and width: as given, else the image's size (img2img, inpainting), else the model's default. An image
 * must have the size given: nothing is resized.
 */
export function resolveSize(o: { height?: number; width?: number; image?: unknown }, defaultSize: number): { height: number; width: number } {
  if (o.image === undefined) return { height: o.height ?? defaultSize, width: o.width ?? defaultSize };
  const img = imageShape(o.image, 'image');
  if ((o.height !== undefined && o.height !== img.height) || (o.width !== undefined && o.width !== img.width)) {
    throw new Error(`image is ${img.width}×${img.height} but width×height ${o.width ?? img.width}×${o.height ?? img.height} was asked: resize the image (or omit height/width)`);
  }
  return img;
}

/** maskImage is only for the SD pipelines (diffusers' SDXL and PixArt inpainting differ and have no reference here). */
export function rejectMask(o: object, pipeline: string): void {
  if ((o as { maskImage?: unknown }).maskImage !== undefined) {
    throw new Error(`${pipeline}: maskImage (inpainting) is supported by StableDiffusionPipeline only`);
  }
}
