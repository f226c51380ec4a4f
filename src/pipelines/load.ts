/**
 * `loadPipeline(dirOrUrl)`: reads model_index.json, builds each component from its folder and returns the
 * pipeline class it names. A diffusers folder (Node) or a folder written by `tgate convert` (Node path or
 * http(s) URL). Nothing is fetched but the location given. ControlNets come from the folder's `controlnet`
 * component (StableDiffusion(XL)ControlNet pipelines) or from the `controlnet` option.
 */
import type { Module } from '../nn/module.js';
import { readModelIndex } from '../io/component-source.js';
import { parseModelIndex } from '../io/model-index.js';
import { loadModel } from '../models/load.js';
import type { OffloadOptions } from '../nn/offload.js';
import type { WeightDtype } from '../nn/packed-weight.js';
import { joinLocation, readJsonAt } from '../io/location.js';
import { throwIfAborted, type NetOptions } from '../io/http-fetch.js';
import { loadTokenizer } from '../tokenizers/index.js';
import { schedulerFromConfig } from '../samplers/index.js';
import type { CLIPTokenizer, T5Tokenizer } from '../tokenizers/index.js';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text.js';
import type { T5EncoderModel } from '../models/t5-encoder.js';
import type { PixArtTransformer2DModel } from '../models/pixart-transformer.js';
import { StableDiffusionPipeline } from './stable-diffusion.js';
import { StableDiffusionXLPipeline } from './stable-diffusion-xl.js';
import { PixArtAlphaPipeline } from './pixart-alpha.js';
import { PixArtSigmaPipeline } from './pixart-sigma.js';
import { ControlNetModel } from '../models/controlnet.js';
import { checkControlNetFits } from './controlnet-step.js';

/** What `loadPipeline` returns (PixArtSigmaPipeline is a PixArtAlphaPipeline; inpainting folders load as StableDiffusionPipeline). */
export type Pipeline = StableDiffusionPipeline | StableDiffusionXLPipeline | PixArtAlphaPipeline;

/** `fetch`, `signal` and `timeoutMs` (an idle timeout, default 60 s) apply to every file the load reads ({@link NetOptions}). */
export interface LoadOptions extends NetOptions {
  /** Weight variant, e.g. "fp16" (diffusion_pytorch_model.fp16.safetensors). */
  variant?: string;
  /** Skip these components (e.g. ['text_encoder'] for PixArt with precomputed embeddings). */
  skip?: string[];
  /** Progress per component: name, index, count. */
  onProgress?: (component: string, index: number, total: number) => void;
  /** For URLs: keep fetched shards in the Cache API (see TfjsOpenOptions). */
  cache?: boolean;
  /**
   * Weight offload for every model component (denoiser, VAE, text encoders): weights are read into JS memory
   * and each unit's are uploaded only while it runs (see nn/offload.ts); `true` = 512 MiB units. Outputs are
   * unchanged; each forward pays one upload of the weights it uses. For models beyond the backend's memory.
   */
  offload?: boolean | OffloadOptions;
  /**
   * 'float16': every model component's Linear, Conv2d and Embedding weights held as packed halves, read
   * with f32 arithmetic (half the weight memory; WebGPU only, an error elsewhere). A converted
   * `--quantize float16` folder uploads its bytes as they are. Not with `offload`.
   */
  weightDtype?: WeightDtype;
  /**
   * ControlNet(s) for an SD or SDXL pipeline: a ControlNet folder (diffusers or converted; path or URL, loaded
   * with these options) or a loaded `ControlNetModel`, or a list of them (their residuals are summed). Replaces
   * the folder's own `controlnet` component.
   */
  controlnet?: ControlNetSource | ControlNetSource[];
}

/** A ControlNet folder (path or URL) or a loaded model. */
export type ControlNetSource = string | ControlNetModel;

/** The most ControlNets one pipeline takes (MultiControlNetModel folders are read up to this many). */
export const MAX_CONTROLNETS = 8;

const SD = ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler'];
const SDXL = ['unet', 'vae', 'text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'scheduler'];
const PIPELINES: Record<string, string[]> = {
  StableDiffusionPipeline: SD,
  StableDiffusionInpaintPipeline: SD,
  StableDiffusionControlNetPipeline: [...SD, 'controlnet'],
  StableDiffusionControlNetImg2ImgPipeline: [...SD, 'controlnet'],
  StableDiffusionXLPipeline: SDXL,
  StableDiffusionXLControlNetPipeline: [...SDXL, 'controlnet'],
  StableDiffusionXLControlNetImg2ImgPipeline: [...SDXL, 'controlnet'],
  PixArtAlphaPipeline: ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
  PixArtSigmaPipeline: ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
};

/** Loads a diffusers pipeline folder and returns the pipeline class its model_index.json names. */
export async function loadPipeline(dir: string, opts: LoadOptions = {}): Promise<Pipeline> {
  const indexFile = joinLocation(dir, 'model_index.json');
  const net: NetOptions = { fetch: opts.fetch, signal: opts.signal, timeoutMs: opts.timeoutMs };
  let raw: Record<string, unknown>;
  try {
    raw = await readModelIndex(dir, net);
  } catch (e) {
    throw new Error(`${dir} is not a pipeline folder: ${(e as Error).message}`);
  }
  const index = parseModelIndex(raw, indexFile, PIPELINES);
  const cls = index.className;
  const names = PIPELINES[cls];
  const parts: Record<string, unknown> = {};
  const loaded: Module[] = [];
  try {
    for (const [i, name] of names.entries()) {
      throwIfAborted(opts.signal, dir);
      opts.onProgress?.(name, i, names.length);
      const entry = index.components.get(name);
      const optional = cls.startsWith('PixArt') && (name === 'text_encoder' || name === 'tokenizer');
      if (opts.skip?.includes(name) || (optional && !entry) || (name === 'controlnet' && opts.controlnet !== undefined)) continue;
      if (!entry) throw new Error(`${indexFile}: component "${name}" is ${entry === null ? 'marked absent' : 'missing'}, but a ${cls} needs it (or pass skip: ["${name}"])`);
      const sub = joinLocation(dir, name, `${indexFile}: component`);
      const modelOpts = { ...net, variant: opts.variant, cache: opts.cache, offload: opts.offload, weightDtype: opts.weightDtype };
      if (name === 'controlnet') parts.controlnet = await folderControlNets(dir, entry.className, indexFile, modelOpts, loaded);
      else if (name.startsWith('tokenizer')) parts[name] = await loadTokenizer(sub, net);
      else if (name === 'scheduler') {
        const sc = await readJsonAt(sub, 'scheduler_config.json', net);
        if (sc === undefined) throw new Error(`${dir}: component "scheduler" has no ${joinLocation(sub, 'scheduler_config.json')}`);
        parts[name] = schedulerFromConfig(sc, undefined, joinLocation(sub, 'scheduler_config.json'));
      } else {
        const m = await loadModel(sub, modelOpts);
        loaded.push(m);
        parts[name] = m;
      }
    }
    if (opts.controlnet !== undefined) {
      if (cls.startsWith('PixArt')) throw new Error(`controlnet: ControlNets attach to SD and SDXL pipelines; ${dir} is a ${cls}`);
      const sources = Array.isArray(opts.controlnet) ? opts.controlnet : [opts.controlnet];
      if (sources.length < 1 || sources.length > MAX_CONTROLNETS) throw new Error(`controlnet: give 1 to ${MAX_CONTROLNETS} ControlNets, got ${sources.length}`);
      const nets: ControlNetModel[] = [];
      for (const [k, src] of sources.entries()) {
        throwIfAborted(opts.signal, dir);
        nets.push(await controlNetFrom(src, k, { ...net, variant: opts.variant, cache: opts.cache, offload: opts.offload, weightDtype: opts.weightDtype }, loaded));
      }
      parts.controlnet = nets;
    }
    const unet = parts.unet as UNet2DConditionModel | undefined;
    const controlnets = (parts.controlnet as ControlNetModel[] | undefined) ?? [];
    if (unet) {
      const textWidth = unet.config.crossAttentionDim[cls.includes('XL') ? unet.config.crossAttentionDim.length - 1 : 0];
      controlnets.forEach((cn, k) => checkControlNetFits(cn, unet, textWidth, k));
    }
  } catch (e) {
    loaded.forEach((m) => m.dispose());
    throw e;
  }
  const common = { vae: parts.vae as AutoencoderKL, scheduler: parts.scheduler as ReturnType<typeof schedulerFromConfig> };
  const controlnets = (parts.controlnet as ControlNetModel[] | undefined) ?? [];
  if (!cls.includes('XL') && cls.startsWith('StableDiffusion')) {
    return new StableDiffusionPipeline({
      ...common, unet: parts.unet as UNet2DConditionModel, textEncoder: parts.text_encoder as CLIPTextModel, tokenizer: parts.tokenizer as CLIPTokenizer,
      controlnets,
    });
  }
  if (cls.startsWith('StableDiffusionXL')) {
    return new StableDiffusionXLPipeline({
      ...common, unet: parts.unet as UNet2DConditionModel, textEncoder: parts.text_encoder as CLIPTextModel, tokenizer: parts.tokenizer as CLIPTokenizer,
      textEncoder2: parts.text_encoder_2 as CLIPTextModelWithProjection, tokenizer2: parts.tokenizer_2 as CLIPTokenizer,
      forceZerosForEmptyPrompt: (index.settings.force_zeros_for_empty_prompt as boolean | undefined) ?? true, controlnets,
    });
  }
  return new (cls === 'PixArtSigmaPipeline' ? PixArtSigmaPipeline : PixArtAlphaPipeline)({
    ...common, transformer: parts.transformer as PixArtTransformer2DModel,
    textEncoder: (parts.text_encoder as T5EncoderModel | undefined) ?? null, tokenizer: (parts.tokenizer as T5Tokenizer | undefined) ?? null,
  });
}

type ModelLoadOptions = NetOptions & Pick<LoadOptions, 'variant' | 'cache' | 'offload' | 'weightDtype'>;

/** A ControlNet from the `controlnet` option: a loaded model as it is, or a folder loaded (and registered in `loaded`). */
async function controlNetFrom(src: ControlNetSource, k: number, opts: ModelLoadOptions, loaded: Module[]): Promise<ControlNetModel> {
  if (src instanceof ControlNetModel) return src;
  if (typeof src !== 'string') throw new Error(`controlnet ${k}: expected a ControlNet folder (path or URL) or a ControlNetModel, got ${typeof src}`);
  const m = await loadModel(src, opts);
  loaded.push(m);
  if (!(m instanceof ControlNetModel)) throw new Error(`controlnet ${k}: ${src} holds a ${m.constructor.name}, not a ControlNetModel`);
  return m;
}

/**
 * The folder's own ControlNets: `controlnet/` for a ControlNetModel entry; for MultiControlNetModel (as diffusers
 * saves it) `controlnet/`, `controlnet_1/`, … while their config.json exists, at most {@link MAX_CONTROLNETS}.
 */
async function folderControlNets(dir: string, className: string, indexFile: string, opts: ModelLoadOptions, loaded: Module[]): Promise<ControlNetModel[]> {
  if (className !== 'ControlNetModel' && className !== 'MultiControlNetModel') {
    throw new Error(`${indexFile}: component "controlnet" is a ${className}; supported: ControlNetModel, MultiControlNetModel`);
  }
  const nets: ControlNetModel[] = [];
  for (let k = 0; k < (className === 'ControlNetModel' ? 1 : MAX_CONTROLNETS); k++) {
    const name = k === 0 ? 'controlnet' : `controlnet_${k}`;
    const sub = joinLocation(dir, name, `${indexFile}: component`);
    if (k > 0 && (await readJsonAt(sub, 'config.json', opts)) === undefined) break;
    nets.push(await controlNetFrom(sub, k, opts, loaded));
  }
  return nets;
}
