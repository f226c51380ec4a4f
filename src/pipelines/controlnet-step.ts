/**
 * ControlNets in a generation, as diffusers v0.30.3's StableDiffusion(XL)ControlNet(Img2Img)Pipeline run them:
 * the options checked and resolved before any work ({@link planControl}), each conditioning image prepared as
 * the pipelines' `prepare_image` does, and, at every denoiser call, the residuals the UNet adds
 * ({@link ControlStep.residuals}):
 *
 * - scale at loop step i of N: conditioning scale × keep, keep = 1 − (i/N < start or (i+1)/N > end); the
 *   ControlNet runs even when keep is 0 (as diffusers: its residuals are then zeros, and TGATE's caches in it
 *   still fill on schedule);
 * - the guidance batch gets the duplicated image and the same conditioning as the UNet; guess mode with
 *   guidance runs the ControlNet on the conditional half only (diffusers' `chunk(2)[1]` of the latents, prompt
 *   embeddings, pooled embeddings and time ids) and gives the unconditional half zeros;
 * - several ControlNets: their residuals summed in order (MultiControlNetModel);
 * - TGATE: the ControlNets carry the same TGATE processors and flags as the UNet (installed by the TGATE
 *   session); from the gate on the single branch runs with its own conditioning and the undoubled image. In
 *   guess mode a ControlNet runs one half, so its cache at gate − 1 is that half as it is.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ControlNetModel } from '../models/controlnet.js';
import type { DownBlock2D } from '../models/unet-blocks.js';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { TgateContext } from '../attention/tgate.js';
import type { Branch } from './denoise.js';
import { imageShape, preprocessControlImage, type ImageInput } from './images.js';
import { repeatPerPrompt, tileRows } from './batch.js';

/** The ControlNet options of `generate` (diffusers' `image` of the ControlNet pipelines is `controlImage` here). */
export interface ControlNetGenerateOptions {
  /**
   * The conditioning image(s), at the generated image's size (nothing is resized): with one ControlNet an
   * `RGBImage`, a list of them, or an NCHW tensor [B, C, H, W] in [0, 1]; with several, a list of one such
   * input per ControlNet, in order. B is 1 (shared by every image) or the number of prompts.
   */
  controlImage?: ImageInput | ImageInput[];
  /** Multiplies each ControlNet's residuals: one number, or one per ControlNet. Default 1, 0.8 with `image` (img2img). */
  controlnetConditioningScale?: number | number[];
  /** Fraction of the steps after which a ControlNet starts to apply (default 0): one number, or one per ControlNet. */
  controlGuidanceStart?: number | number[];
  /** Fraction of the steps after which it stops (default 1): one number, or one per ControlNet. */
  controlGuidanceEnd?: number | number[];
  /**
   * The ControlNet sees only the conditional half of the guidance batch and scales its residuals from 0.1
   * (shallowest) to 1 (mid block); the unconditional half gets none. Always on for ControlNets whose config
   * says `global_pool_conditions`.
   */
  guessMode?: boolean;
}

/** Every key of ControlNetGenerateOptions (the compiler keeps this list complete). */
export const CONTROLNET_OPTION_KEYS = Object.keys({
  controlImage: 1, controlnetConditioningScale: 1, controlGuidanceStart: 1, controlGuidanceEnd: 1, guessMode: 1,
} satisfies Record<keyof ControlNetGenerateOptions, 1>);

/** Options of a call, resolved to one entry per ControlNet. */
export interface ControlNetPlan {
  nets: ControlNetModel[];
  images: ImageInput[];
  scales: number[];
  starts: number[];
  ends: number[];
  guessMode: boolean;
  /** Images per prompt (diffusers repeats an image batch of one per prompt that many times). */
  perPrompt: number;
}

/** What the options are checked against. */
export interface ControlFit {
  unet: UNet2DConditionModel;
  /** Width of the prompt embeddings the UNet (and so the ControlNets) take. */
  textWidth: number;
  height: number;
  width: number;
  latentHeight: number;
  latentWidth: number;
  prompts: number;
  perPrompt: number;
  /** img2img: the default conditioning scale is 0.8, as in diffusers' ControlNet img2img pipelines. */
  img2img: boolean;
}

/** diffusers' controlnet_keep[i]: 1 inside the [start, end] window of the N loop steps, else 0. */
export function controlnetKeep(i: number, n: number, start: number, end: number): number {
  return 1 - (i / n < start || (i + 1) / n > end ? 1 : 0);
}

/** One value per ControlNet from a number or a list of exactly one per ControlNet. */
function perNet(name: string, v: number | number[] | undefined, n: number, dflt: number): number[] {
  const list = v === undefined ? new Array<number>(n).fill(dflt) : Array.isArray(v) ? v : new Array<number>(n).fill(v);
  if (list.length !== n || !list.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new Error(`${name} must be a finite number or a list of ${n} (one per ControlNet), got ${JSON.stringify(v)}`);
  }
  return list;
}

/** Skip connections of a down path as "channels@level", in the order ControlNet residuals come. */
function skipLayout(m: { config: { blockOutChannels: number[] }; down_blocks: { items: DownBlock2D[] } }): string {
  const boc = m.config.blockOutChannels;
  const out = [`${boc[0]}@0`];
  let level = 0;
  m.down_blocks.items.forEach((b, i) => {
    for (let r = 0; r < b.resnets.length; r++) out.push(`${boc[i]}@${level}`);
    if (b.downsamplers) out.push(`${boc[i]}@${++level}`);
  });
  return out.join(', ');
}

/** Checks that ControlNet `k`'s residuals and inputs fit the UNet; the error names what differs. */
export function checkControlNetFits(cn: ControlNetModel, unet: UNet2DConditionModel, textWidth: number, k: number): void {
  const c = cn.config;
  const u = unet.config;
  const fail = (what: string): never => { throw new Error(`controlnet ${k} does not fit this pipeline's UNet: ${what}`); };
  if (c.inChannels !== u.inChannels) fail(`it takes ${c.inChannels}-channel latents, the UNet ${u.inChannels}`);
  const mine = skipLayout(cn);
  const theirs = skipLayout(unet);
  if (mine !== theirs || cn.controlnet_mid_block.inChannels !== u.blockOutChannels[u.blockOutChannels.length - 1]) {
    fail(`its residuals (channels@level: ${mine}; mid ${cn.controlnet_mid_block.inChannels}) are not the UNet's skips (${theirs}; mid ${u.blockOutChannels[u.blockOutChannels.length - 1]})`);
  }
  const cross = [...new Set(cn.down_blocks.items.flatMap((b, i) => (b.hasCrossAttention ? [c.crossAttentionDim[i]] : [])))];
  if (cross.some((d) => d !== textWidth)) fail(`its cross_attention_dim is ${cross.join('|')} but the prompt embeddings have width ${textWidth}`);
  if (c.additionEmbedType !== u.additionEmbedType || c.projectionClassEmbeddingsInputDim !== u.projectionClassEmbeddingsInputDim) {
    fail(`addition_embed_type ${c.additionEmbedType} (input ${c.projectionClassEmbeddingsInputDim}) differs from the UNet's ${u.additionEmbedType} (input ${u.projectionClassEmbeddingsInputDim}): an SD ControlNet cannot run in SDXL, nor the reverse`);
  }
}

/** The conditioning image input of each ControlNet (with several, `controlImage` must be a list of one per net). */
export function controlImages(o: ControlNetGenerateOptions, n: number): ImageInput[] {
  const v = o.controlImage;
  if (v === undefined) throw new Error(`this pipeline has ${n === 1 ? 'a ControlNet' : `${n} ControlNets`}: pass controlImage (or detach them: pipe.controlnets = [])`);
  if (n === 1) return [v as ImageInput];
  if (!Array.isArray(v) || v.length !== n) {
    throw new Error(`controlImage: this pipeline has ${n} ControlNets: give a list of ${n} images (one per ControlNet, in order)`);
  }
  return v as ImageInput[];
}

/** Each of `n` ControlNets' guidance window, as fractions of the steps: checked, 0 ≤ start < end ≤ 1. */
export function controlWindows(o: ControlNetGenerateOptions, n: number): { starts: number[]; ends: number[] } {
  const starts = perNet('controlGuidanceStart', o.controlGuidanceStart, n, 0);
  const ends = perNet('controlGuidanceEnd', o.controlGuidanceEnd, n, 1);
  starts.forEach((s, k) => {
    const e = ends[k];
    if (!(s >= 0 && s < e && e <= 1)) throw new Error(`controlGuidanceStart ${s} and controlGuidanceEnd ${e} must satisfy 0 ≤ start < end ≤ 1${n > 1 ? ` (ControlNet ${k})` : ''}`);
  });
  return { starts, ends };
}

/**
 * Checks and resolves the ControlNet options before any work; null when the pipeline has no ControlNet (then
 * every ControlNet option is an error).
 */
export function planControl(o: ControlNetGenerateOptions, nets: readonly ControlNetModel[], fit: ControlFit): ControlNetPlan | null {
  const n = nets.length;
  if (n === 0) {
    const given = CONTROLNET_OPTION_KEYS.filter((k) => o[k as keyof ControlNetGenerateOptions] !== undefined);
    if (given.length) throw new Error(`${given.join(', ')} ${given.length === 1 ? 'needs' : 'need'} a ControlNet: loadPipeline(dir, { controlnet: dirOrModel })`);
    return null;
  }
  nets.forEach((cn, k) => checkControlNetFits(cn, fit.unet, fit.textWidth, k));
  const images = controlImages(o, n);
  images.forEach((img, k) => {
    const name = n === 1 ? 'controlImage' : `controlImage[${k}]`;
    const s = imageShape(img, name, nets[k].config.conditioningChannels);
    if (s.height !== fit.height || s.width !== fit.width) {
      throw new Error(`${name} is ${s.width}×${s.height} but the image generated is ${fit.width}×${fit.height}: resize it (nothing is resized here)`);
    }
    if (s.batch !== 1 && s.batch !== fit.prompts) throw new Error(`${name} has ${s.batch} images: give 1, or one per prompt (${fit.prompts})`);
    // The conditioning embedding's stride-2 convolutions round up, as torch's do.
    let h = s.height;
    let w = s.width;
    for (let i = 1; i < nets[k].config.conditioningEmbeddingOutChannels.length; i++) { h = Math.ceil(h / 2); w = Math.ceil(w / 2); }
    if (h !== fit.latentHeight || w !== fit.latentWidth) {
      throw new Error(`controlnet ${k} brings a ${s.width}×${s.height} image to ${w}×${h} but the latents are ${fit.latentWidth}×${fit.latentHeight}: its conditioning embedding and the VAE scale differently`);
    }
  });
  const scales = perNet('controlnetConditioningScale', o.controlnetConditioningScale, n, fit.img2img ? 0.8 : 1);
  const { starts, ends } = controlWindows(o, n);
  if (o.guessMode !== undefined && typeof o.guessMode !== 'boolean') throw new Error(`guessMode must be true or false, got ${JSON.stringify(o.guessMode)}`);
  // diffusers: guess_mode or the first ControlNet's global_pool_conditions.
  const guessMode = !!o.guessMode || nets[0].config.globalPoolConditions;
  return { nets: [...nets], images, scales, starts, ends, guessMode, perPrompt: fit.perPrompt };
}

/** The conditioning a ControlNet call takes: the UNet's for the same branch. */
export interface ControlConditioning {
  encoderHiddenStates: tf.Tensor;
  textEmbeds?: tf.Tensor;
  timeIds?: tf.Tensor;
}

/** One denoiser call, as the pipeline's closure sees it. */
export interface ControlCall extends ControlConditioning {
  /** The UNet's scaled input (batch 2·rows for 'cfg'). */
  input: tf.Tensor;
  timestep: number;
  branch: Branch;
  ctx: TgateContext;
  step: number;
  numSteps: number;
}

/** UNet residual inputs. */
export interface ControlResiduals {
  downBlockAdditionalResiduals: tf.Tensor[];
  midBlockAdditionalResidual: tf.Tensor;
}

/** diffusers' `t.chunk(2)[1]`: the second half of the rows. */
const secondHalf = (t: tf.Tensor): tf.Tensor => t.slice(t.shape[0] / 2);

/** The ControlNets of one generation: prepared images, and the residuals of each denoiser call. */
export class ControlStep {
  private constructor(
    readonly plan: ControlNetPlan,
    /** Per ControlNet: the image for one branch (rows) and for the guidance batch (2·rows, or rows in guess mode). */
    private readonly single: tf.Tensor[],
    private readonly cfg: tf.Tensor[],
  ) {}

  /**
   * Prepares the conditioning images for `rows` images (diffusers' prepare_image: a batch of one repeated to every
   * row, a batch per prompt repeated per image; doubled for guidance unless in guess mode). Tensors go to `own`.
   */
  static async prepare(plan: ControlNetPlan, rows: number, doCfg: boolean, own: <T extends tf.Tensor>(t: T) => T): Promise<ControlStep> {
    const single: tf.Tensor[] = [];
    const cfg: tf.Tensor[] = [];
    for (const [k, input] of plan.images.entries()) {
      const name = plan.nets.length === 1 ? 'controlImage' : `controlImage[${k}]`;
      const x = await preprocessControlImage(input, name, plan.nets[k].config.conditioningChannels);
      try {
        const r = own(x.shape[0] === 1 ? tileRows(x, rows) : repeatPerPrompt(x, plan.perPrompt));
        single.push(r);
        cfg.push(doCfg && !plan.guessMode ? own(tf.concat([r, r], 0)) : r);
      } finally {
        x.dispose();
      }
    }
    return new ControlStep(plan, single, cfg);
  }

  /** The summed residuals of every ControlNet for one denoiser call (inside the call's tf.tidy). */
  residuals(c: ControlCall): ControlResiduals {
    const p = this.plan;
    const half = p.guessMode && c.branch === 'cfg';
    const pick = (t: tf.Tensor | undefined) => (t && half ? secondHalf(t) : t);
    const tg = c.ctx.tgate;
    // One half runs: its cache at gate − 1 is that half, not the mean of two.
    const ctx: TgateContext = half && tg && !tg.keepShape ? { ...c.ctx, tgate: { ...tg, keepShape: true } } : c.ctx;
    const sample = pick(c.input)!;
    let down: tf.Tensor[] = [];
    let mid: tf.Tensor | null = null;
    p.nets.forEach((cn, k) => {
      const keep = controlnetKeep(c.step, c.numSteps, p.starts[k], p.ends[k]);
      const out = cn.forward({
        sample, timestep: c.timestep, encoderHiddenStates: pick(c.encoderHiddenStates)!, textEmbeds: pick(c.textEmbeds), timeIds: pick(c.timeIds),
        controlnetCond: c.branch === 'cfg' ? this.cfg[k] : this.single[k], conditioningScale: p.scales[k] * keep, guessMode: p.guessMode,
        attnContext: ctx,
      });
      down = mid ? down.map((d, j) => tf.add(d, out.downBlockResSamples[j])) : out.downBlockResSamples;
      mid = mid ? tf.add(mid, out.midBlockResSample) : out.midBlockResSample;
    });
    if (!half) return { downBlockAdditionalResiduals: down, midBlockAdditionalResidual: mid! };
    const pad = (t: tf.Tensor) => tf.concat([tf.zerosLike(t), t], 0);
    return { downBlockAdditionalResiduals: down.map(pad), midBlockAdditionalResidual: pad(mid!) };
  }
}
