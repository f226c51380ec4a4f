/** diffusers StableDiffusionPipeline (SD-1.5, SD-2.1 and the bundled tiny-shapes model), with TGATE and DeepCache. */
import * as tf from '@tensorflow/tfjs-core';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { CLIPTextModel } from '../models/clip-text.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import type { Scheduler } from '../samplers/index.js';
import { runGeneration, type GenerateOptionsBase, type GenerateResult, type Own } from './session.js';
import { checkCommon, checkEmbeds, checkSize, warnTruncated } from './checks.js';
import type { Module } from '../nn/module.js';
import { LoraLoader } from '../lora/lora-loader.js';

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

export interface SDGenerateOptions extends GenerateOptionsBase {
  promptEmbeds?: tf.Tensor;
  negativePromptEmbeds?: tf.Tensor;
}

export interface SDComponents {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  scheduler: Scheduler;
}

/** LoRA methods (loadLora, fuseLora, …) come from {@link LoraLoader}. */
export class StableDiffusionPipeline extends LoraLoader {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  /** Replaceable: `pipe.scheduler = schedulerFromConfig(pipe.scheduler.config, 'EulerDiscreteScheduler')`. */
  scheduler: Scheduler;

  constructor(c: SDComponents) {
    super();
    this.unet = c.unet;
    this.vae = c.vae;
    this.textEncoder = c.textEncoder;
    this.tokenizer = c.tokenizer;
    this.scheduler = c.scheduler;
  }

  get vaeScaleFactor(): number { return 2 ** (this.vae.config.blockOutChannels.length - 1); }

  /** CLIP last hidden state of one prompt, [1, 77, D]. */
  encodePrompt(prompt: string): tf.Tensor {
    const enc = this.tokenizer.call([prompt], { padding: 'max_length', maxLength: this.tokenizer.modelMaxLength, truncation: true });
    warnTruncated([this.tokenizer.checkTruncation(prompt)]);
    return tf.tidy(() => {
      const ids = tf.tensor2d(enc.inputIds, [1, enc.inputIds[0].length], 'int32');
      return this.textEncoder.forward({ inputIds: ids }).lastHiddenState;
    });
  }

  /** Runs text-to-image generation. Invalid options are rejected before any work starts. */
  async generate(o: SDGenerateOptions): Promise<GenerateResult> {
    const cfg = this.unet.config;
    const { height, width, steps, guidance } = this.checkOptions(o, 7.5);
    const ehsDim = cfg.crossAttentionDim[0];
    checkEmbeds('promptEmbeds', o.promptEmbeds, ehsDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, ehsDim);
    const doCfg = guidance > 1 && cfg.timeCondProjDim == null;
    const f = this.vaeScaleFactor;
    return runGeneration(o, {
      scheduler: this.scheduler, vae: this.vae, denoiser: this.unet, steps, guidance, doCfg,
      latentShape: [1, cfg.inChannels, height / f, width / f],
      condition: (own, unet) => {
        const cond = o.promptEmbeds ?? own(this.encodePrompt(o.prompt!));
        const uncond = !doCfg ? cond : o.negativePromptEmbeds ?? own(this.encodePrompt(o.negativePrompt ?? ''));
        const both = doCfg ? own(tf.concat([uncond, cond], 0)) : cond;
        const timestepCond = this.timestepCond(guidance, own);
        return (input, t, branch, ctx) => unet({
          sample: input, timestep: t, encoderHiddenStates: branch === 'cfg' ? both : branch === 'uncond' ? uncond : cond,
          timestepCond: timestepCond && tf.tile(timestepCond, [input.shape[0], 1]), attnContext: ctx,
        });
      },
    });
  }

  /** Resolves size, steps and guidance defaults and checks them (shared with SDXL). */
  protected checkOptions(o: SDGenerateOptions, defaultGuidance: number): { height: number; width: number; steps: number; guidance: number } {
    const cfg = this.unet.config;
    const factor = this.vaeScaleFactor;
    const height = o.height ?? cfg.sampleSize * factor;
    const width = o.width ?? cfg.sampleSize * factor;
    checkCommon(o);
    checkSize(height, width, factor * this.unet.downscaleFactor, 'VAE scale × UNet downsampling');
    if (o.prompt === undefined && !o.promptEmbeds) throw new Error('give a prompt or promptEmbeds');
    return { height, width, steps: o.numInferenceSteps ?? 50, guidance: o.guidanceScale ?? defaultGuidance };
  }

  /** LCM's guidance embedding [1, time_cond_proj_dim] when the UNet takes one. */
  protected timestepCond(guidance: number, own: Own): tf.Tensor | undefined {
    const dim = this.unet.config.timeCondProjDim;
    return dim ? own(guidanceScaleEmbedding(guidance, dim, 1)) : undefined;
  }

  /** Frees every model's weights. */
  dispose(): void {
    this.lora.dispose();
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
    this.scheduler.dispose();
  }

  protected loraComponents(): Record<string, Module | null> { return { unet: this.unet, text_encoder: this.textEncoder }; }
}
