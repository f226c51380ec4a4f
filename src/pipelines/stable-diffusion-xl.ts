/**
 * diffusers StableDiffusionXLPipeline: two CLIP text encoders (penultimate hidden states concatenated,
 * pooled embedding from the second), SDXL's micro-conditioning time ids, TGATE (after the gate the
 * negative pooled embedding and negative time ids condition the single branch, as T-GATE's SDXL.py).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import { runGeneration, type GenerateResult, type Own } from './session.js';
import { checkEmbeds, warnTruncated } from './checks.js';
import { StableDiffusionPipeline, type SDComponents, type SDGenerateOptions } from './stable-diffusion.js';
import type { Module } from '../nn/module.js';

export interface SDXLGenerateOptions extends SDGenerateOptions {
  pooledPromptEmbeds?: tf.Tensor;
  negativePooledPromptEmbeds?: tf.Tensor;
  originalSize?: [number, number];
  cropsCoordsTopLeft?: [number, number];
  targetSize?: [number, number];
  negativeOriginalSize?: [number, number];
  negativeCropsCoordsTopLeft?: [number, number];
  negativeTargetSize?: [number, number];
}

export interface SDXLComponents extends SDComponents {
  textEncoder2: CLIPTextModelWithProjection;
  tokenizer2: CLIPTokenizer;
  /** model_index.json's `force_zeros_for_empty_prompt` (true for SDXL base). */
  forceZerosForEmptyPrompt?: boolean;
}

export class StableDiffusionXLPipeline extends StableDiffusionPipeline {
  textEncoder2: CLIPTextModelWithProjection;
  tokenizer2: CLIPTokenizer;
  forceZerosForEmptyPrompt: boolean;

  constructor(c: SDXLComponents) {
    super(c);
    this.textEncoder2 = c.textEncoder2;
    this.tokenizer2 = c.tokenizer2;
    this.forceZerosForEmptyPrompt = c.forceZerosForEmptyPrompt ?? true;
  }

  /** [1,77,D1+D2] penultimate states of both encoders and the pooled projection [1,P]. */
  encodePromptXL(prompt: string): { embeds: tf.Tensor; pooled: tf.Tensor } {
    const run = (tok: CLIPTokenizer, te: CLIPTextModel | CLIPTextModelWithProjection) => {
      const enc = tok.call([prompt], { padding: 'max_length', maxLength: tok.modelMaxLength, truncation: true });
      warnTruncated([tok.checkTruncation(prompt)]);
      const ids = tf.tensor2d(enc.inputIds, [1, enc.inputIds[0].length], 'int32');
      return te.forward({ inputIds: ids, outputHiddenStates: true });
    };
    return tf.tidy(() => {
      const o1 = run(this.tokenizer, this.textEncoder);
      const o2 = run(this.tokenizer2, this.textEncoder2);
      const h1 = o1.hiddenStates![o1.hiddenStates!.length - 2];
      const h2 = o2.hiddenStates![o2.hiddenStates!.length - 2];
      return { embeds: tf.concat([h1, h2], -1), pooled: o2.textEmbeds! };
    });
  }

  override async generate(o: SDXLGenerateOptions): Promise<GenerateResult> {
    const cfg = this.unet.config;
    const { height, width, steps, guidance } = this.checkOptions(o, 5.0);
    if (o.promptEmbeds && !o.pooledPromptEmbeds) throw new Error('promptEmbeds for SDXL need pooledPromptEmbeds too');
    const ehsDim = cfg.crossAttentionDim[cfg.crossAttentionDim.length - 1];
    const pooledDim = cfg.projectionClassEmbeddingsInputDim! - 6 * cfg.additionTimeEmbedDim!;
    checkEmbeds('promptEmbeds', o.promptEmbeds, ehsDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, ehsDim);
    checkEmbeds('pooledPromptEmbeds', o.pooledPromptEmbeds, pooledDim, 2);
    checkEmbeds('negativePooledPromptEmbeds', o.negativePooledPromptEmbeds, pooledDim, 2);
    const doCfg = guidance > 1 && cfg.timeCondProjDim == null;
    const f = this.vaeScaleFactor;
    return runGeneration(o, {
      scheduler: this.scheduler, vae: this.vae, denoiser: this.unet, steps, guidance, doCfg,
      latentShape: [1, cfg.inChannels, height / f, width / f],
      condition: (own, unet) => {
        const pos = o.promptEmbeds ? { embeds: o.promptEmbeds, pooled: o.pooledPromptEmbeds! } : this.ownEncoded(o.prompt!, own);
        let neg = pos;
        if (doCfg) {
          if (o.negativePromptEmbeds) neg = { embeds: o.negativePromptEmbeds, pooled: o.negativePooledPromptEmbeds ?? own(tf.zerosLike(pos.pooled)) };
          else if (!o.negativePrompt && this.forceZerosForEmptyPrompt) neg = { embeds: own(tf.zerosLike(pos.embeds)), pooled: own(tf.zerosLike(pos.pooled)) };
          else neg = this.ownEncoded(o.negativePrompt ?? '', own);
        }
        // SDXL micro-conditioning: original size, crop top-left, target size.
        const ids = (orig?: [number, number], crop?: [number, number], target?: [number, number]) =>
          [...(orig ?? [height, width]), ...(crop ?? [0, 0]), ...(target ?? [height, width])];
        const posIds = ids(o.originalSize, o.cropsCoordsTopLeft, o.targetSize);
        const negIds = ids(o.negativeOriginalSize ?? o.originalSize, o.negativeCropsCoordsTopLeft ?? o.cropsCoordsTopLeft, o.negativeTargetSize ?? o.targetSize);
        const branches = {
          cond: { ehs: pos.embeds, text: pos.pooled, time: own(tf.tensor2d([posIds], [1, 6])) },
          uncond: { ehs: neg.embeds, text: neg.pooled, time: own(tf.tensor2d([negIds], [1, 6])) },
          cfg: doCfg ? {
            ehs: own(tf.concat([neg.embeds, pos.embeds], 0)), text: own(tf.concat([neg.pooled, pos.pooled], 0)), time: own(tf.tensor2d([negIds, posIds], [2, 6])),
          } : null,
        };
        const timestepCond = this.timestepCond(guidance, own);
        return (input, t, branch, ctx) => {
          const c = branches[branch]!;
          return unet({
            sample: input, timestep: t, encoderHiddenStates: c.ehs, textEmbeds: c.text, timeIds: c.time,
            timestepCond: timestepCond && tf.tile(timestepCond, [input.shape[0], 1]), attnContext: ctx,
          });
        };
      },
    });
  }

  private ownEncoded(prompt: string, own: Own): { embeds: tf.Tensor; pooled: tf.Tensor } {
    const e = this.encodePromptXL(prompt);
    return { embeds: own(e.embeds), pooled: own(e.pooled) };
  }

  override dispose(): void {
    super.dispose();
    this.textEncoder2.dispose();
  }

  protected override loraComponents(): Record<string, Module | null> { return { ...super.loraComponents(), text_encoder_2: this.textEncoder2 }; }
}
