/**
 * diffusers StableDiffusionXLPipeline (and, with `image`, StableDiffusionXLImg2ImgPipeline without aesthetic
 * scores): two CLIP text encoders (penultimate hidden states concatenated, pooled embedding from the second),
 * SDXL's micro-conditioning time ids, TGATE (after the gate the negative pooled embedding and negative time ids
 * condition the single branch, as T-GATE's SDXL.py). Playground v2.5 folders load here too (EDM sampler, VAE with
 * latents_mean / latents_std). With `controlnets` attached: StableDiffusionXLControlNetPipeline (`controlImage`), and
 * with `image` StableDiffusionXLControlNetImg2ImgPipeline, whose defaults differ from SDXL img2img's: strength 0.8,
 * and `scheduler.setBeginIndex` is called (as SD's img2img does).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import { BASE_OPTION_KEYS, runGeneration, type GenerateResult, type Own } from './session.js';
import { defaultStrength } from './start.js';
import { checkClipSkip, checkEmbeds, checkOptionKeys, rejectMask, warnTruncated } from './checks.js';
import { repeatPerPrompt } from './batch.js';
import { StableDiffusionPipeline, type SDComponents, type SDGenerateOptions, type SDPlan } from './stable-diffusion.js';
import { sdxlTimeIds, TIME_ID_OPTION_KEYS, type SDXLSizeOptions } from './sdxl-time-ids.js';
import type { Module } from '../nn/module.js';
import { CONTROLNET_OPTION_KEYS } from './controlnet-step.js';

export interface SDXLGenerateOptions extends Omit<SDGenerateOptions, 'maskImage'>, SDXLSizeOptions {
  /** [prompts, P] pooled embeddings (required with promptEmbeds). */
  pooledPromptEmbeds?: tf.Tensor;
  /** [prompts, P] (zeros when negativePromptEmbeds come without them). */
  negativePooledPromptEmbeds?: tf.Tensor;
}

export interface SDXLComponents extends SDComponents {
  textEncoder2: CLIPTextModelWithProjection;
  tokenizer2: CLIPTokenizer;
  /** model_index.json's `force_zeros_for_empty_prompt` (true for SDXL base). */
  forceZerosForEmptyPrompt?: boolean;
}

const SDXL_OPTION_KEYS = [
  ...BASE_OPTION_KEYS, ...CONTROLNET_OPTION_KEYS, 'promptEmbeds', 'negativePromptEmbeds', 'clipSkip', 'pooledPromptEmbeds', 'negativePooledPromptEmbeds', ...TIME_ID_OPTION_KEYS,
];

type Encoded = { embeds: tf.Tensor; pooled: tf.Tensor };

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

  /**
   * [B,77,D1+D2] hidden states of both encoders (the penultimate, or clipSkip layers before it) and the pooled
   * projection [B,P] of the second.
   */
  encodePromptXL(prompt: string | string[], opts: { clipSkip?: number } = {}): Encoded {
    const texts = typeof prompt === 'string' ? [prompt] : prompt;
    const layers = Math.min(this.textEncoder.config.numHiddenLayers, this.textEncoder2.config.numHiddenLayers);
    checkClipSkip(opts.clipSkip, layers, 1);
    const back = 2 + (opts.clipSkip ?? 0);
    const run = (tok: CLIPTokenizer, te: CLIPTextModel | CLIPTextModelWithProjection) => {
      const enc = tok.call(texts, { padding: 'max_length', maxLength: tok.modelMaxLength, truncation: true });
      warnTruncated(texts.map((t) => tok.checkTruncation(t)));
      const ids = tf.tensor2d(enc.inputIds.flat(), [texts.length, enc.inputIds[0].length], 'int32');
      return te.forward({ inputIds: ids, outputHiddenStates: true });
    };
    return tf.tidy(() => {
      const o1 = run(this.tokenizer, this.textEncoder);
      const o2 = run(this.tokenizer2, this.textEncoder2);
      const h1 = o1.hiddenStates[o1.hiddenStates.length - back];
      const h2 = o2.hiddenStates[o2.hiddenStates.length - back];
      return { embeds: tf.concat([h1, h2], -1), pooled: o2.textEmbeds! };
    });
  }

  override async generate(o: SDXLGenerateOptions): Promise<GenerateResult> {
    rejectMask(o, 'StableDiffusionXLPipeline');
    checkOptionKeys(o, SDXL_OPTION_KEYS, 'StableDiffusionXLPipeline');
    const cfg = this.unet.config;
    const p = this.checkOptions(o, 5.0);
    if (o.promptEmbeds && !o.pooledPromptEmbeds) throw new Error('promptEmbeds for SDXL need pooledPromptEmbeds too');
    const ehsDim = cfg.crossAttentionDim[cfg.crossAttentionDim.length - 1];
    const pooledDim = cfg.projectionClassEmbeddingsInputDim! - 6 * cfg.additionTimeEmbedDim!;
    checkEmbeds('promptEmbeds', o.promptEmbeds, ehsDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, ehsDim);
    checkEmbeds('pooledPromptEmbeds', o.pooledPromptEmbeds, pooledDim, 2);
    checkEmbeds('negativePooledPromptEmbeds', o.negativePooledPromptEmbeds, pooledDim, 2);
    for (const k of ['pooledPromptEmbeds', 'negativePooledPromptEmbeds'] as const) {
      const t = o[k];
      if (t && t.shape[0] !== p.batch) throw new Error(`${k} has batch ${t.shape[0]} but there are ${p.batch} prompts`);
    }
    if (o.clipSkip !== undefined && o.promptEmbeds) throw new Error('clipSkip has no effect with promptEmbeds (it selects the CLIP layer that encodes prompt)');
    if (this.inpaintingUNet()) throw new Error('StableDiffusionXLPipeline: inpainting UNets are not supported');
    const doCfg = p.guidance > 1 && cfg.timeCondProjDim == null;
    const img2img = o.image !== undefined;
    const ids = sdxlTimeIds(o, p.height, p.width, img2img); // checks the size options before any work
    const control = this.planControl(o, p, ehsDim);
    const f = this.vaeScaleFactor;
    return runGeneration(o, {
      scheduler: this.scheduler, vae: this.vae, denoiser: this.unet, steps: p.steps, guidance: p.guidance, doCfg,
      latentShape: [p.rows, this.vae.config.latentChannels, p.height / f, p.width / f],
      defaultStrength: defaultStrength({ sdxl: true, inpaint: false, control: !!control }), setsBeginIndex: !!control,
      control,
      condition: (own, unet, cn) => {
        const { pos, neg } = this.conditioning(o, p, doCfg, own);
        const m = p.rows;
        const branches = {
          cond: { ehs: pos.embeds, text: pos.pooled, time: own(ids.rows(m, 'cond')) },
          uncond: { ehs: neg.embeds, text: neg.pooled, time: own(ids.rows(m, 'uncond')) },
          cfg: doCfg ? {
            ehs: own(tf.concat([neg.embeds, pos.embeds], 0)), text: own(tf.concat([neg.pooled, pos.pooled], 0)), time: own(ids.rows(m, 'cfg')),
          } : null,
        };
        const timestepCond = this.timestepCond(p.guidance, own);
        return (input, t, branch, ctx, step, numSteps) => {
          const c = branches[branch]!;
          return unet({
            sample: input, timestep: t, encoderHiddenStates: c.ehs, textEmbeds: c.text, timeIds: c.time,
            timestepCond: timestepCond && tf.tile(timestepCond, [input.shape[0], 1]), attnContext: ctx,
            ...cn?.residuals({ input, timestep: t, branch, ctx, step, numSteps, encoderHiddenStates: c.ehs, textEmbeds: c.text, timeIds: c.time }),
          });
        };
      },
    });
  }

  /** Prompt and negative embeddings (diffusers' encode_prompt), each row repeated per image. */
  private conditioning(o: SDXLGenerateOptions, p: SDPlan, doCfg: boolean, own: Own): { pos: Encoded; neg: Encoded } {
    const encode = (texts: string[], clipSkip?: number): Encoded => {
      const e = this.encodePromptXL(texts, { clipSkip });
      return { embeds: own(e.embeds), pooled: own(e.pooled) };
    };
    const pos = o.promptEmbeds ? { embeds: o.promptEmbeds, pooled: o.pooledPromptEmbeds! } : encode(p.prompts!, o.clipSkip);
    let neg = pos;
    if (doCfg) {
      if (o.negativePromptEmbeds) neg = { embeds: o.negativePromptEmbeds, pooled: o.negativePooledPromptEmbeds ?? own(tf.zerosLike(pos.pooled)) };
      else if (o.negativePrompt === undefined && this.forceZerosForEmptyPrompt) neg = { embeds: own(tf.zerosLike(pos.embeds)), pooled: own(tf.zerosLike(pos.pooled)) };
      else neg = encode(p.negatives ?? new Array<string>(p.batch).fill('')); // without clip_skip, as diffusers
    }
    const perImage = (e: Encoded): Encoded => ({ embeds: own(repeatPerPrompt(e.embeds, p.perPrompt)), pooled: own(repeatPerPrompt(e.pooled, p.perPrompt)) });
    const rows = perImage(pos);
    return { pos: rows, neg: doCfg ? perImage(neg) : rows };
  }

  override dispose(): void {
    super.dispose();
    this.textEncoder2.dispose();
  }

  protected override loraComponents(): Record<string, Module | null> { return { ...super.loraComponents(), text_encoder_2: this.textEncoder2 }; }
}
