/**
 * diffusers StableDiffusionPipeline (SD-1.5, SD-2.1 and the bundled tiny-shapes model) with TGATE and DeepCache,
 * and in the same class StableDiffusionImg2ImgPipeline (`image`), StableDiffusionInpaintPipeline (`image` +
 * `maskImage`, 9-channel inpainting UNets or the latent blend of an ordinary UNet) and, with `controlnets`
 * attached, StableDiffusionControlNetPipeline (`controlImage`; with `image`: StableDiffusionControlNetImg2ImgPipeline).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { CLIPTextModel } from '../models/clip-text.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import type { Scheduler } from '../samplers/index.js';
import { BASE_OPTION_KEYS, runGeneration, type GenerateOptionsBase, type GenerateResult, type Own } from './session.js';
import { defaultStrength } from './start.js';
import {
  checkClipSkip, checkCommon, checkEmbeds, checkOptionKeys, checkSize, imagesPerPrompt, promptBatch, resolveSize, warnTruncated,
} from './checks.js';
import { repeatPerPrompt } from './batch.js';
import type { ImageInput } from './images.js';
import type { Module } from '../nn/module.js';
import { LoraLoader } from '../lora/lora-loader.js';
import type { ControlNetModel } from '../models/controlnet.js';
import {
  CONTROLNET_OPTION_KEYS, controlImages, planControl, type ControlNetGenerateOptions, type ControlNetPlan,
} from './controlnet-step.js';
import { imageShape } from './images.js';

export type { GenerateOptionsBase, GenerateResult } from './session.js';

const f32 = Math.fround;

/**
 * diffusers `get_guidance_scale_embedding` (LCM's `timestep_cond`): sinusoidal embedding of (w − 1)·1000,
 * computed with torch's float32 roundings.
 */
export function guidanceScaleEmbedding(guidanceScale: number, dim: number, batch: number): tf.Tensor2D {
  const w = f32(f32(guidanceScale - 1) * 1000);
  const half = Math.floor(dim / 2);
  const step = f32(Math.log(10000) / (half - 1));
  const row = new Float32Array(dim);
  for (let i = 0; i < half; i++) {
    const arg = f32(w * f32(Math.exp(f32(i * -step))));
    row[i] = Math.sin(arg);
    row[half + i] = Math.cos(arg);
  }
  const out = new Float32Array(batch * dim);
  for (let b = 0; b < batch; b++) out.set(row, b * dim);
  return tf.tensor2d(out, [batch, dim]);
}

export interface SDGenerateOptions extends GenerateOptionsBase, ControlNetGenerateOptions {
  /** [prompts, 77, D] text embeddings instead of `prompt`. */
  promptEmbeds?: tf.Tensor;
  /** [prompts, 77, D] instead of `negativePrompt`. */
  negativePromptEmbeds?: tf.Tensor;
  /**
   * Inpainting (with `image`): the area to repaint, 1 (white) = repaint, 0 = keep; RGB images are converted to
   * grayscale and binarized at 0.5, a tensor is [B, 1, H, W] in [0, 1]. Same size as `image`.
   */
  maskImage?: ImageInput;
  /**
   * CLIP layers to skip from the end (diffusers' clip_skip): 1 = the penultimate layer (then CLIP's final layer
   * norm). As in diffusers 0.30.3 it applies to the prompt only, not to the negative prompt.
   */
  clipSkip?: number;
}

/** What `checkOptions` resolves for a call. */
export interface SDPlan {
  height: number;
  width: number;
  steps: number;
  guidance: number;
  /** Prompt batch, images per prompt, and the latent batch (their product). */
  batch: number;
  perPrompt: number;
  rows: number;
  prompts?: string[];
  negatives?: string[];
}

export interface SDComponents {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  scheduler: Scheduler;
  controlnets?: ControlNetModel[];
}

const SD_OPTION_KEYS = [...BASE_OPTION_KEYS, ...CONTROLNET_OPTION_KEYS, 'promptEmbeds', 'negativePromptEmbeds', 'maskImage', 'clipSkip'];

/** LoRA methods (loadLora, fuseLora, …) come from {@link LoraLoader}. */
export class StableDiffusionPipeline extends LoraLoader {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  /** Replaceable: `pipe.scheduler = schedulerFromConfig(pipe.scheduler.config, 'EulerDiscreteScheduler')`. */
  scheduler: Scheduler;
  /**
   * ControlNets applied to every generation (their residuals summed), in the order of `controlImage`'s list;
   * empty for none. Attach with `loadPipeline(dir, { controlnet })` or set it; `dispose()` frees them too.
   */
  controlnets: ControlNetModel[];

  constructor(c: SDComponents) {
    super();
    this.unet = c.unet;
    this.vae = c.vae;
    this.textEncoder = c.textEncoder;
    this.tokenizer = c.tokenizer;
    this.scheduler = c.scheduler;
    this.controlnets = c.controlnets ?? [];
  }

  get vaeScaleFactor(): number { return 2 ** (this.vae.config.blockOutChannels.length - 1); }

  /**
   * CLIP text embeddings [B, 77, D] of one prompt or a batch: the last hidden state, or with `clipSkip` the
   * hidden state clipSkip layers before the last, through CLIP's final layer norm (diffusers' encode_prompt).
   */
  encodePrompt(prompt: string | string[], opts: { clipSkip?: number } = {}): tf.Tensor {
    const texts = typeof prompt === 'string' ? [prompt] : prompt;
    checkClipSkip(opts.clipSkip, this.textEncoder.config.numHiddenLayers, 0);
    const enc = this.tokenizer.call(texts, { padding: 'max_length', maxLength: this.tokenizer.modelMaxLength, truncation: true });
    warnTruncated(texts.map((t) => this.tokenizer.checkTruncation(t)));
    return tf.tidy(() => {
      const ids = tf.tensor2d(enc.inputIds.flat(), [texts.length, enc.inputIds[0].length], 'int32');
      const out = this.textEncoder.forward({ inputIds: ids, outputHiddenStates: opts.clipSkip !== undefined });
      if (opts.clipSkip === undefined) return out.lastHiddenState;
      const h = out.hiddenStates[out.hiddenStates.length - 1 - opts.clipSkip];
      return this.textEncoder.text_model.final_layer_norm.forward(h);
    });
  }

  /** Runs text-to-image, img2img (`image`) or inpainting (`image` + `maskImage`). Invalid options are rejected before any work starts. */
  async generate(o: SDGenerateOptions): Promise<GenerateResult> {
    checkOptionKeys(o, SD_OPTION_KEYS, 'StableDiffusionPipeline');
    const cfg = this.unet.config;
    const p = this.checkOptions(o, 7.5);
    const ehsDim = cfg.crossAttentionDim[0];
    checkEmbeds('promptEmbeds', o.promptEmbeds, ehsDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, ehsDim);
    checkClipSkip(o.clipSkip, this.textEncoder.config.numHiddenLayers, 0);
    if (o.clipSkip !== undefined && o.promptEmbeds) throw new Error('clipSkip has no effect with promptEmbeds (it selects the CLIP layer that encodes prompt)');
    const maskedInput = this.inpaintingUNet();
    if (maskedInput && o.maskImage === undefined) {
      throw new Error(`this UNet takes ${cfg.inChannels} input channels (an inpainting UNet: latents, mask, masked-image latents): pass image and maskImage`);
    }
    if (o.maskImage !== undefined && this.controlnets.length) throw new Error('inpainting with a ControlNet (diffusers\' StableDiffusionControlNetInpaintPipeline) is not supported: detach the ControlNets (pipe.controlnets = [])');
    const control = this.planControl(o, p, ehsDim);
    const doCfg = p.guidance > 1 && cfg.timeCondProjDim == null;
    const f = this.vaeScaleFactor;
    return runGeneration(o, {
      scheduler: this.scheduler, vae: this.vae, denoiser: this.unet, steps: p.steps, guidance: p.guidance, doCfg,
      latentShape: [p.rows, this.vae.config.latentChannels, p.height / f, p.width / f],
      defaultStrength: defaultStrength({ sdxl: false, inpaint: o.maskImage !== undefined, control: !!control }), setsBeginIndex: true,
      inpaint: o.maskImage === undefined ? undefined : { maskImage: o.maskImage, maskedInput },
      control,
      condition: (own, unet, cn) => {
        const pos = o.promptEmbeds ?? own(this.encodePrompt(p.prompts!, { clipSkip: o.clipSkip }));
        const cond = own(repeatPerPrompt(pos, p.perPrompt));
        let uncond = cond;
        if (doCfg) {
          // diffusers encodes the negative prompt without clip_skip.
          const neg = o.negativePromptEmbeds ?? own(this.encodePrompt(p.negatives ?? new Array<string>(p.batch).fill('')));
          uncond = own(repeatPerPrompt(neg, p.perPrompt));
        }
        const both = doCfg ? own(tf.concat([uncond, cond], 0)) : cond;
        const timestepCond = this.timestepCond(p.guidance, own);
        return (input, t, branch, ctx, step, numSteps) => {
          const ehs = branch === 'cfg' ? both : branch === 'uncond' ? uncond : cond;
          return unet({
            sample: input, timestep: t, encoderHiddenStates: ehs, timestepCond: timestepCond && tf.tile(timestepCond, [input.shape[0], 1]), attnContext: ctx,
            ...cn?.residuals({ input, timestep: t, branch, ctx, step, numSteps, encoderHiddenStates: ehs }),
          });
        };
      },
    });
  }

  /** Whether the UNet is an inpainting UNet (latents + mask + masked-image latents); rejects other widths. */
  protected inpaintingUNet(): boolean {
    const inCh = this.unet.config.inChannels;
    const lat = this.vae.config.latentChannels;
    if (inCh === lat) return false;
    if (inCh === 2 * lat + 1) return true;
    throw new Error(`the UNet takes ${inCh} input channels but the VAE makes ${lat}-channel latents (expected ${lat}, or ${2 * lat + 1} for inpainting)`);
  }

  /** Resolves size, steps, guidance and the batch, and checks them (shared with SDXL). */
  protected checkOptions(o: SDGenerateOptions, defaultGuidance: number): SDPlan {
    const cfg = this.unet.config;
    const factor = this.vaeScaleFactor;
    checkCommon(o);
    // Without `image`, the first ControlNet's image sets the size (diffusers' ControlNet pipelines).
    const ctl = o.image === undefined && this.controlnets.length && o.controlImage !== undefined
      ? imageShape(controlImages(o, this.controlnets.length)[0], 'controlImage', this.controlnets[0].config.conditioningChannels) : null;
    const { height, width } = ctl ? { height: o.height ?? ctl.height, width: o.width ?? ctl.width } : resolveSize(o, cfg.sampleSize * factor);
    checkSize(height, width, factor * this.unet.downscaleFactor, 'VAE scale × UNet downsampling');
    const { batch, prompts, negatives } = promptBatch(o);
    const perPrompt = imagesPerPrompt(o.numImagesPerPrompt, batch);
    return {
      height, width, steps: o.numInferenceSteps ?? 50, guidance: o.guidanceScale ?? defaultGuidance,
      batch, perPrompt, rows: batch * perPrompt, prompts, negatives,
    };
  }

  /** The call's ControlNet plan (null without ControlNets), checked against the UNet and the call's sizes. */
  protected planControl(o: SDGenerateOptions, p: SDPlan, textWidth: number): ControlNetPlan | null {
    const f = this.vaeScaleFactor;
    return planControl(o, this.controlnets, {
      unet: this.unet, textWidth, height: p.height, width: p.width, latentHeight: p.height / f, latentWidth: p.width / f,
      prompts: p.batch, perPrompt: p.perPrompt, img2img: o.image !== undefined,
    });
  }

  /** LCM's guidance embedding [1, time_cond_proj_dim] when the UNet takes one. */
  protected timestepCond(guidance: number, own: Own): tf.Tensor | undefined {
    const dim = this.unet.config.timeCondProjDim;
    return dim ? own(guidanceScaleEmbedding(guidance, dim, 1)) : undefined;
  }

  /** Frees every model's weights. */
  dispose(): void {
    this.lora.dispose();
    this.controlnets.forEach((cn) => cn.dispose());
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
    this.scheduler.dispose();
  }

  protected loraComponents(): Record<string, Module | null> { return { unet: this.unet, text_encoder: this.textEncoder }; }
}
