/**
 * diffusers StableDiffusionXLPipeline: two CLIP text encoders (penultimate hidden states concatenated,
 * pooled embedding from the second), SDXL's micro-conditioning time ids, TGATE (after the gate the
 * negative pooled embedding and negative time ids condition the single branch, as T-GATE's SDXL.py).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text.js';
import type { CLIPTokenizer } from '../tokenizers/index.js';
import { Rng } from '../samplers/rng.js';
import { denoiseLoop } from './denoise.js';
import { beginTgate } from './tgate-session.js';
import { DeepCache } from './deepcache.js';
import { checkCommon, checkEmbeds, checkSize, guidanceScaleEmbedding, prepareLatents, warnTruncated } from './common.js';
import { StableDiffusionPipeline, type GenerateResult, type SDComponents, type SDGenerateOptions } from './stable-diffusion.js';

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
    const factor = this.vaeScaleFactor;
    const height = o.height ?? cfg.sampleSize * factor;
    const width = o.width ?? cfg.sampleSize * factor;
    const steps = o.numInferenceSteps ?? 50;
    const guidance = o.guidanceScale ?? 5.0;
    checkCommon(o);
    checkSize(height, width, factor * this.unet.downscaleFactor, 'VAE scale × UNet downsampling');
    if (o.prompt === undefined && !o.promptEmbeds) throw new Error('give a prompt or promptEmbeds');
    if (o.promptEmbeds && !o.pooledPromptEmbeds) throw new Error('promptEmbeds for SDXL need pooledPromptEmbeds too');
    const ehsDim = cfg.crossAttentionDim[cfg.crossAttentionDim.length - 1];
    const pooledDim = cfg.projectionClassEmbeddingsInputDim! - 6 * cfg.additionTimeEmbedDim!;
    checkEmbeds('promptEmbeds', o.promptEmbeds, ehsDim);
    checkEmbeds('negativePromptEmbeds', o.negativePromptEmbeds, ehsDim);
    checkEmbeds('pooledPromptEmbeds', o.pooledPromptEmbeds, pooledDim, 2);
    checkEmbeds('negativePooledPromptEmbeds', o.negativePooledPromptEmbeds, pooledDim, 2);
    const doCfg = guidance > 1 && cfg.timeCondProjDim == null;
    const tg = beginTgate(this.unet, o.tgate, steps, doCfg);
    const dc = o.deepcache ? new DeepCache(this.unet, o.deepcache, tg.settings?.gateStep) : null;
    const owned: tf.Tensor[] = [];
    const own = <T extends tf.Tensor>(t: T): T => { owned.push(t); return t; };
    try {
      let cond = o.promptEmbeds;
      let pooled = o.pooledPromptEmbeds;
      if (!cond) {
        const e = this.encodePromptXL(o.prompt!);
        cond = own(e.embeds);
        pooled = own(e.pooled);
      }
      let uncond = cond;
      let uncondPooled = pooled!;
      if (doCfg) {
        if (o.negativePromptEmbeds) {
          uncond = o.negativePromptEmbeds;
          uncondPooled = o.negativePooledPromptEmbeds ?? own(tf.zerosLike(pooled!));
        } else if (!o.negativePrompt && this.forceZerosForEmptyPrompt) {
          uncond = own(tf.zerosLike(cond));
          uncondPooled = own(tf.zerosLike(pooled!));
        } else {
          const e = this.encodePromptXL(o.negativePrompt ?? '');
          uncond = own(e.embeds);
          uncondPooled = own(e.pooled);
        }
      }
      const ids = (orig?: [number, number], crop?: [number, number], target?: [number, number]) =>
        [...(orig ?? [height, width]), ...(crop ?? [0, 0]), ...(target ?? [height, width])];
      const posIds = ids(o.originalSize, o.cropsCoordsTopLeft, o.targetSize);
      const negIds = ids(o.negativeOriginalSize ?? o.originalSize, o.negativeCropsCoordsTopLeft ?? o.cropsCoordsTopLeft, o.negativeTargetSize ?? o.targetSize);
      const single = (embeds: tf.Tensor, p: tf.Tensor, t: number[]) => ({ ehs: embeds, text: p, time: own(tf.tensor2d([t], [1, 6])) });
      const branches = {
        cond: single(cond, pooled!, posIds),
        uncond: single(uncond, uncondPooled, negIds),
        cfg: doCfg ? {
          ehs: own(tf.concat([uncond, cond], 0)), text: own(tf.concat([uncondPooled, pooled!], 0)), time: own(tf.tensor2d([negIds, posIds], [2, 6])),
        } : null,
      };
      const timestepCond = cfg.timeCondProjDim ? own(guidanceScaleEmbedding(guidance, cfg.timeCondProjDim, 1)) : undefined;

      this.scheduler.setTimesteps(steps);
      const latents = prepareLatents([1, cfg.inChannels, height / factor, width / factor], this.scheduler.initNoiseSigma, o.latents, o.seed);
      const final = await denoiseLoop({
        scheduler: this.scheduler, latents, numInferenceSteps: steps, guidanceScale: guidance, doCfg,
        guidanceRescale: o.guidanceRescale, tgate: tg.settings, eta: o.eta, stepNoise: o.stepNoise, onStep: o.onStep,
        generator: new Rng(o.seed ?? 0),
        beforeStep: dc ? (i) => dc.beforeStep(i) : undefined,
        denoise: (input, t, branch, ctx) => {
          const c = branches[branch]!;
          const tc = timestepCond && input.shape[0] !== 1 ? tf.tile(timestepCond, [input.shape[0], 1]) : timestepCond;
          const args = { sample: input, timestep: t, encoderHiddenStates: c.ehs, textEmbeds: c.text, timeIds: c.time, timestepCond: tc, attnContext: ctx };
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

  override dispose(): void {
    super.dispose();
    this.textEncoder2.dispose();
  }
}
