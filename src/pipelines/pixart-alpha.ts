/**
 * diffusers PixArtAlphaPipeline (also PixArt-Σ folders): T5 prompt embeddings with attention masks,
 * resolution/aspect-ratio conditions for 1024-style models, learned-sigma outputs, TGATE (after the gate
 * the negative mask and conditions drive the single branch, as T-GATE's PixArt_Alpha.py).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PixArtTransformer2DModel } from '../models/pixart-transformer.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { T5EncoderModel } from '../models/t5-encoder.js';
import type { T5Tokenizer } from '../tokenizers/index.js';
import type { Scheduler } from '../samplers/index.js';
import { runGeneration, type GenerateOptionsBase, type GenerateResult } from './session.js';
import { checkCommon, checkEmbeds, checkSize, warnTruncated } from './checks.js';
import { LoraLoader } from '../lora/lora-loader.js';
import type { Module } from '../nn/module.js';

export interface PixArtGenerateOptions extends GenerateOptionsBase {
  promptEmbeds?: tf.Tensor;
  negativePromptEmbeds?: tf.Tensor;
  promptAttentionMask?: tf.Tensor;
  negativePromptAttentionMask?: tf.Tensor;
  /** T5 token budget (diffusers' max_sequence_length, 120 for PixArt-α). */
  maxSequenceLength?: number;
}

export interface PixArtComponents {
  transformer: PixArtTransformer2DModel;
  vae: AutoencoderKL;
  /** Optional: without it, generate needs promptEmbeds (T5-XXL is 19 GB in fp32). */
  textEncoder?: T5EncoderModel | null;
  tokenizer?: T5Tokenizer | null;
  scheduler: Scheduler;
}

/** LoRA methods (loadLora, fuseLora, …) come from {@link LoraLoader}. */
export class PixArtAlphaPipeline extends LoraLoader {
  transformer: PixArtTransformer2DModel;
  vae: AutoencoderKL;
  textEncoder: T5EncoderModel | null;
  tokenizer: T5Tokenizer | null;
  scheduler: Scheduler;

  constructor(c: PixArtComponents) {
    super();
    this.transformer = c.transformer;
    this.vae = c.vae;
    this.textEncoder = c.textEncoder ?? null;
    this.tokenizer = c.tokenizer ?? null;
    this.scheduler = c.scheduler;
  }

  get vaeScaleFactor(): number { return 2 ** (this.vae.config.blockOutChannels.length - 1); }

  /** T5 embeddings [1,L,D] and the keep-mask [1,L] of one prompt. */
  encodePrompt(prompt: string, maxLength = 120): { embeds: tf.Tensor; mask: tf.Tensor } {
    if (!this.textEncoder || !this.tokenizer) throw new Error('this pipeline has no text encoder: pass promptEmbeds and promptAttentionMask');
    const enc = this.tokenizer.call([prompt], { padding: 'max_length', maxLength, truncation: true });
    warnTruncated([this.tokenizer.checkTruncation(prompt, maxLength)]);
    return tf.tidy(() => {
      const ids = tf.tensor2d(enc.inputIds, [1, maxLength], 'int32');
      const mask = tf.tensor2d(enc.attentionMask, [1, maxLength], 'int32');
      const embeds = this.textEncoder!.forward({ inputIds: ids, attentionMask: mask }).lastHiddenState;
      return { embeds, mask: tf.cast(mask, 'float32') };
    });
  }

  async generate(o: PixArtGenerateOptions): Promise<GenerateResult> {
    const cfg = this.transformer.config;
    const factor = this.vaeScaleFactor;
    const height = o.height ?? cfg.sampleSize * factor;
    const width = o.width ?? cfg.sampleSize * factor;
    const steps = o.numInferenceSteps ?? 20;
    const guidance = o.guidanceScale ?? 4.5;
    checkCommon(o);
    checkSize(height, width, factor * cfg.patchSize, 'VAE scale × patch size');
    if (o.prompt === undefined && !o.promptEmbeds) throw new Error('give a prompt or promptEmbeds');
    const textDim = cfg.captionChannels ?? this.transformer.innerDim;
    checkEmbeds('promptEmbeds', o.promptEmbeds, textDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, textDim);
    const doCfg = guidance > 1;
    const f = this.vaeScaleFactor;
    return runGeneration(o, {
      scheduler: this.scheduler, vae: this.vae, denoiser: this.transformer, steps, guidance, doCfg,
      latentShape: [1, cfg.inChannels, height / f, width / f],
      condition: (own) => {
        const maxLen = o.maxSequenceLength ?? 120;
        const embedOrGiven = (text: string | undefined, embeds?: tf.Tensor, mask?: tf.Tensor) => {
          if (embeds) return { embeds, mask: mask ?? own(tf.ones([embeds.shape[0], embeds.shape[1]!])) };
          const e = this.encodePrompt(text ?? '', maxLen);
          return { embeds: own(e.embeds), mask: own(e.mask) };
        };
        const cond = embedOrGiven(o.prompt, o.promptEmbeds, o.promptAttentionMask);
        const uncond = doCfg ? embedOrGiven(o.negativePrompt ?? '', o.negativePromptEmbeds, o.negativePromptAttentionMask) : cond;
        // PixArt-1024-style models condition on resolution and aspect ratio as well.
        const extra = cfg.useAdditionalConditions;
        const branch = (embeds: tf.Tensor, mask: tf.Tensor, b: number) => ({
          embeds, mask,
          resolution: extra ? own(tf.tensor2d(Array.from({ length: b }, () => [height, width]), [b, 2])) : null,
          aspectRatio: extra ? own(tf.tensor2d(Array.from({ length: b }, () => [height / width]), [b, 1])) : null,
        });
        const branches = {
          cond: branch(cond.embeds, cond.mask, 1),
          uncond: branch(uncond.embeds, uncond.mask, 1),
          cfg: doCfg ? branch(own(tf.concat([uncond.embeds, cond.embeds], 0)), own(tf.concat([uncond.mask, cond.mask], 0)), 2) : null,
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
