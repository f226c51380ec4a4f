/** diffusers StableDiffusionPipeline (SD-1.5, SD-2.1 and the bundled tiny-shapes model), with TGATE and DeepCache. */
import * as tf from '@tensorflow/tfjs-core';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { CLIPTextModel } from '../models/clip-text.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import type { Scheduler } from '../samplers/index.js';
import { Rng } from '../samplers/rng.js';
import type { TgateOptions } from '../attention/tgate.js';
import { denoiseLoop, type StepInfo } from './denoise.js';
import { beginTgate } from './tgate-session.js';
import { DeepCache, type DeepCacheOptions } from './deepcache.js';
import {
  checkCommon, checkEmbeds, checkSize, decodeLatents, guidanceScaleEmbedding, prepareLatents, toRGBImages, warnTruncated,
  type RGBImage,
} from './common.js';

/** Options shared by every pipeline's `generate` (diffusers `__call__` arguments in camelCase). */
export interface GenerateOptionsBase {
  prompt?: string;
  negativePrompt?: string;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  guidanceRescale?: number;
  /** Initial latents, NCHW, unscaled (the pipeline multiplies by the scheduler's initNoiseSigma). */
  latents?: tf.Tensor;
  seed?: number;
  eta?: number;
  outputType?: 'latent' | 'image';
  tgate?: TgateOptions | null;
  /** Recorded scheduler noise per step (replays a diffusers run). */
  stepNoise?: (step: number) => tf.Tensor | undefined;
  /** Progress: called after every step; the tensors in `info` are only valid during the call. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export interface SDGenerateOptions extends GenerateOptionsBase {
  promptEmbeds?: tf.Tensor;
  negativePromptEmbeds?: tf.Tensor;
  deepcache?: DeepCacheOptions | null;
}

export interface GenerateResult {
  /** Final latents, NCHW (caller disposes). */
  latents: tf.Tensor;
  /** Decoded RGB images (empty with outputType 'latent'). */
  images: RGBImage[];
}

export interface SDComponents {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  scheduler: Scheduler;
}

export class StableDiffusionPipeline {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  /** Replaceable: `pipe.scheduler = schedulerFromConfig(pipe.scheduler.config, 'EulerDiscreteScheduler')`. */
  scheduler: Scheduler;

  constructor(c: SDComponents) {
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
    const factor = this.vaeScaleFactor;
    const height = o.height ?? cfg.sampleSize * factor;
    const width = o.width ?? cfg.sampleSize * factor;
    const steps = o.numInferenceSteps ?? 50;
    const guidance = o.guidanceScale ?? 7.5;
    checkCommon(o);
    checkSize(height, width, factor * 2 ** (cfg.blockOutChannels.length - 1), 'VAE scale × UNet downsampling');
    if (o.prompt === undefined && !o.promptEmbeds) throw new Error('give a prompt or promptEmbeds');
    const ehsDim = cfg.crossAttentionDim[0];
    checkEmbeds('promptEmbeds', o.promptEmbeds, ehsDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, ehsDim);
    const doCfg = guidance > 1 && cfg.timeCondProjDim == null;
    const tg = beginTgate(this.unet, o.tgate, steps, doCfg);
    const dc = o.deepcache ? new DeepCache(this.unet, o.deepcache, tg.settings?.gateStep) : null;
    const owned: tf.Tensor[] = [];
    try {
      const cond = o.promptEmbeds ?? this.encodePrompt(o.prompt!);
      if (!o.promptEmbeds) owned.push(cond);
      let uncond = cond;
      if (doCfg) {
        uncond = o.negativePromptEmbeds ?? this.encodePrompt(o.negativePrompt ?? '');
        if (!o.negativePromptEmbeds) owned.push(uncond);
      }
      const both = doCfg ? tf.concat([uncond, cond], 0) : cond;
      if (doCfg) owned.push(both);
      const timestepCond = cfg.timeCondProjDim ? guidanceScaleEmbedding(guidance, cfg.timeCondProjDim, 1) : undefined;
      if (timestepCond) owned.push(timestepCond);

      this.scheduler.setTimesteps(steps);
      const latents = prepareLatents([1, cfg.inChannels, height / factor, width / factor], this.scheduler.initNoiseSigma, o.latents, o.seed);
      const final = await denoiseLoop({
        scheduler: this.scheduler, latents, numInferenceSteps: steps, guidanceScale: guidance, doCfg,
        guidanceRescale: o.guidanceRescale, tgate: tg.settings, eta: o.eta, stepNoise: o.stepNoise, onStep: o.onStep,
        generator: new Rng(o.seed ?? 0),
        beforeStep: dc ? (i) => dc.beforeStep(i) : undefined,
        denoise: (input, t, branch, ctx) => {
          const ehs = branch === 'cfg' ? both : branch === 'uncond' ? uncond : cond;
          const tc = timestepCond && input.shape[0] !== 1 ? tf.tile(timestepCond, [input.shape[0], 1]) : timestepCond;
          const args = { sample: input, timestep: t, encoderHiddenStates: ehs, timestepCond: tc, attnContext: ctx };
          return dc ? dc.forward(args) : this.unet.forward(args);
        },
      });
      return await this.finish(final, o.outputType);
    } finally {
      owned.forEach((t) => t.dispose());
      dc?.dispose();
      tg.end();
    }
  }

  /** Decodes unless `outputType` is 'latent'. */
  protected async finish(latents: tf.Tensor, outputType?: 'latent' | 'image'): Promise<GenerateResult> {
    if (outputType === 'latent') return { latents, images: [] };
    const img = decodeLatents(this.vae, latents);
    try {
      return { latents, images: await toRGBImages(img) };
    } finally {
      img.dispose();
    }
  }

  /** Frees every model's weights. */
  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
    this.scheduler.dispose();
  }
}
