/**
 * diffusers PixArtAlphaPipeline: T5 prompt embeddings with attention masks, resolution/aspect-ratio conditions
 * for 1024-style models, learned-sigma outputs, TGATE (after the gate the negative mask and conditions drive the
 * single branch, as T-GATE's PixArt_Alpha.py), and img2img with `image` (no diffusers pipeline: defined as SD's
 * img2img). `PixArtSigmaPipeline` (pixart-sigma.ts) is this class with Σ's defaults.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PixArtTransformer2DModel } from '../models/pixart-transformer.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { T5EncoderModel } from '../models/t5-encoder.js';
import type { T5Tokenizer } from '../tokenizers/index.js';
import type { Scheduler } from '../samplers/index.js';
import { BASE_OPTION_KEYS, runGeneration, type GenerateOptionsBase, type GenerateResult } from './session.js';
import { defaultStrength } from './start.js';
import {
  checkCommon, checkEmbeds, checkOptionKeys, checkSize, imagesPerPrompt, promptBatch, rejectMask, resolveSize, warnTruncated,
} from './checks.js';
import { repeatPerPrompt, tileRows } from './batch.js';
import { LoraLoader } from '../lora/lora-loader.js';
import type { Module } from '../nn/module.js';

export interface PixArtGenerateOptions extends GenerateOptionsBase {
  /** [prompts, L, D] T5 embeddings instead of `prompt`. */
  promptEmbeds?: tf.Tensor;
  negativePromptEmbeds?: tf.Tensor;
  /** [prompts, L], 1 = token, 0 = padding (all ones when omitted). */
  promptAttentionMask?: tf.Tensor;
  negativePromptAttentionMask?: tf.Tensor;
  /** T5 token budget (diffusers' max_sequence_length: 120 for PixArt-α, 300 for PixArt-Σ). */
  maxSequenceLength?: number;
}

const PIXART_OPTION_KEYS = [
  ...BASE_OPTION_KEYS, 'promptEmbeds', 'negativePromptEmbeds', 'promptAttentionMask', 'negativePromptAttentionMask', 'maxSequenceLength',
];

export interface PixArtComponents {
  transformer: PixArtTransformer2DModel;
  vae: AutoencoderKL;
  /** Optional: without it, generate needs promptEmbeds (T5-XXL is 19 GB in fp32). */
  textEncoder?: T5EncoderModel | null;
  tokenizer?: T5Tokenizer | null;
  scheduler: Scheduler;
}

type Encoded = { embeds: tf.Tensor; mask: tf.Tensor };

/** LoRA methods (loadLora, fuseLora, …) come from {@link LoraLoader}. */
export class PixArtAlphaPipeline extends LoraLoader {
  transformer: PixArtTransformer2DModel;
  vae: AutoencoderKL;
  textEncoder: T5EncoderModel | null;
  tokenizer: T5Tokenizer | null;
  scheduler: Scheduler;
  /** diffusers' default max_sequence_length of this pipeline. */
  protected readonly defaultMaxSequenceLength: number = 120;

  constructor(c: PixArtComponents) {
    super();
    this.transformer = c.transformer;
    this.vae = c.vae;
    this.textEncoder = c.textEncoder ?? null;
    this.tokenizer = c.tokenizer ?? null;
    this.scheduler = c.scheduler;
  }

  get vaeScaleFactor(): number { return 2 ** (this.vae.config.blockOutChannels.length - 1); }

  /** The pipeline's class name (in error messages). */
  protected get name(): string { return 'PixArtAlphaPipeline'; }

  /** T5 embeddings [B,L,D] and keep-masks [B,L] of one prompt or a batch, padded to `maxLength` tokens. */
  encodePrompt(prompt: string | string[], maxLength = this.defaultMaxSequenceLength): Encoded {
    if (!this.textEncoder || !this.tokenizer) throw new Error('this pipeline has no text encoder: pass promptEmbeds and promptAttentionMask');
    const texts = typeof prompt === 'string' ? [prompt] : prompt;
    const enc = this.tokenizer.call(texts, { padding: 'max_length', maxLength, truncation: true });
    warnTruncated(texts.map((t) => this.tokenizer!.checkTruncation(t, maxLength)));
    return tf.tidy(() => {
      const ids = tf.tensor2d(enc.inputIds.flat(), [texts.length, maxLength], 'int32');
      const mask = tf.tensor2d(enc.attentionMask.flat(), [texts.length, maxLength], 'int32');
      const embeds = this.textEncoder!.forward({ inputIds: ids, attentionMask: mask }).lastHiddenState;
      return { embeds, mask: tf.cast(mask, 'float32') };
    });
  }

  /** Whether the transformer gets resolution / aspect-ratio conditions (PixArt-α 1024; never for Σ). */
  protected additionalConditions(): boolean {
    return this.transformer.config.useAdditionalConditions;
  }

  /** Runs text-to-image, or img2img with `image`. Invalid options are rejected before any work starts. */
  async generate(o: PixArtGenerateOptions): Promise<GenerateResult> {
    rejectMask(o, this.name);
    checkOptionKeys(o, PIXART_OPTION_KEYS, this.name);
    const cfg = this.transformer.config;
    const factor = this.vaeScaleFactor;
    checkCommon(o);
    const { height, width } = resolveSize(o, cfg.sampleSize * factor);
    const steps = o.numInferenceSteps ?? 20;
    const guidance = o.guidanceScale ?? 4.5;
    checkSize(height, width, factor * cfg.patchSize, 'VAE scale × patch size');
    const { batch, prompts, negatives } = promptBatch(o);
    const perPrompt = imagesPerPrompt(o.numImagesPerPrompt, batch);
    const maxLen = o.maxSequenceLength ?? this.defaultMaxSequenceLength;
    if (!Number.isInteger(maxLen) || maxLen < 1 || maxLen > 8192) throw new Error(`maxSequenceLength must be an integer in 1…8192, got ${maxLen}`);
    const textDim = cfg.captionChannels ?? this.transformer.innerDim;
    checkEmbeds('promptEmbeds', o.promptEmbeds, textDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, textDim);
    checkMask('promptAttentionMask', o.promptAttentionMask, o.promptEmbeds);
    checkMask('negativePromptAttentionMask', o.negativePromptAttentionMask, o.negativePromptEmbeds);
    const extra = this.additionalConditions();
    const doCfg = guidance > 1;
    const rows = batch * perPrompt;
    return runGeneration(o, {
      scheduler: this.scheduler, vae: this.vae, denoiser: this.transformer, steps, guidance, doCfg,
      latentShape: [rows, cfg.inChannels, height / factor, width / factor],
      defaultStrength: defaultStrength({ sdxl: false, inpaint: false, control: false }), setsBeginIndex: true,
      condition: (own) => {
        const given = (embeds: tf.Tensor, mask?: tf.Tensor): Encoded => ({ embeds, mask: mask ?? own(tf.ones([embeds.shape[0], embeds.shape[1]!])) });
        const encoded = (texts: string[], len: number): Encoded => {
          const e = this.encodePrompt(texts, len);
          return { embeds: own(e.embeds), mask: own(e.mask) };
        };
        const pos = o.promptEmbeds ? given(o.promptEmbeds, o.promptAttentionMask) : encoded(prompts!, maxLen);
        // diffusers 0.30.3: embeddings are repeated per prompt, masks tiled ([m0, m1, m0, m1]) — reproduced.
        const perImage = (e: Encoded): Encoded => ({ embeds: own(repeatPerPrompt(e.embeds, perPrompt)), mask: own(tileRows(e.mask, perPrompt)) });
        const cond = perImage(pos);
        let uncond = cond;
        if (doCfg) {
          const neg = o.negativePromptEmbeds ? given(o.negativePromptEmbeds, o.negativePromptAttentionMask)
            : encoded(negatives ?? new Array<string>(batch).fill(''), pos.embeds.shape[1]!);
          uncond = perImage(neg);
        }
        const branch = (e: Encoded, b: number) => ({
          ...e,
          resolution: extra ? own(tf.tensor2d(Array.from({ length: b }, () => [height, width]), [b, 2])) : null,
          aspectRatio: extra ? own(tf.tensor2d(Array.from({ length: b }, () => [height / width]), [b, 1])) : null,
        });
        const branches = {
          cond: branch(cond, rows),
          uncond: branch(uncond, rows),
          cfg: doCfg ? branch({ embeds: own(tf.concat([uncond.embeds, cond.embeds], 0)), mask: own(tf.concat([uncond.mask, cond.mask], 0)) }, 2 * rows) : null,
        };
        const learnedSigma = cfg.outChannels === 2 * cfg.inChannels;
        return (input, t, br, ctx) => {
          const c = branches[br]!;
          const out = this.transformer.forward({
            hiddenStates: input, timestep: t, encoderHiddenStates: c.embeds, encoderAttentionMask: c.mask,
            resolution: c.resolution, aspectRatio: c.aspectRatio, attnContext: ctx,
          });
          // Guidance is linear per channel, so dropping the learned variance before it changes nothing.
          return learnedSigma ? out.slice([0, 0, 0, 0], [-1, cfg.inChannels, -1, -1]) : out;
        };
      },
    });
  }

  dispose(): void {
    this.lora.dispose();
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoder?.dispose();
    this.scheduler.dispose();
  }

  protected loraComponents(): Record<string, Module | null> { return { transformer: this.transformer, text_encoder: this.textEncoder }; }
}

/** An attention mask goes with its embeddings: [B, L] of 0 and 1. */
function checkMask(name: string, mask: tf.Tensor | undefined, embeds: tf.Tensor | undefined): void {
  if (!mask) return;
  if (!embeds) throw new Error(`${name} needs the embeddings it masks (${name.replace('AttentionMask', 'Embeds')})`);
  if (mask.rank !== 2 || mask.shape[0] !== embeds.shape[0] || mask.shape[1] !== embeds.shape[1]) {
    throw new Error(`${name} must be [${embeds.shape[0]}, ${embeds.shape[1]}] (one row per embedding), got [${mask.shape}]`);
  }
}
