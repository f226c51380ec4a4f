/**
 * Everything the package knows about each model class, in one table ({@link MODEL_SPECS}): the `_class_name`s
 * its configs carry, how to build it from a config, how to run it on inputs named and laid out as diffusers'
 * (or transformers') forward arguments, NCHW (`tgate forward`), sample inputs to compare two copies of it
 * (`tgate convert --verify`), and, for denoisers, its MAC count (bench/). The loaders, the CLI, the converter
 * and the benchmarks all read this table; a new model class is one more entry.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { ConfigError, ConfigReader, showValue } from '../io/config.js';
import { UNet2DConditionModel } from './unet-2d-condition.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from './clip-text.js';
import { T5EncoderModel } from './t5-encoder.js';
import { AutoencoderKL } from './autoencoder-kl.js';
import { PixArtTransformer2DModel } from './pixart-transformer.js';
import { ControlNetModel } from './controlnet.js';
import { controlnetMacs, pixartMacs, unetMacs, type ForwardMacs, type MacOptions } from './macs.js';
import type { TextTimeConfig } from './unet-2d-condition-config.js';

/** Tensors by diffusers' argument (or output) name. */
export type NamedTensors = Record<string, tf.Tensor>;

/** How {@link runModel} calls a model; `mode` picks AutoencoderKL's direction. */
export interface RunOptions {
  mode?: 'decode' | 'encode';
}

/** One model class, as the rest of the package sees it. */
export interface ModelSpec<M extends Module = Module> {
  /** The `_class_name`s (diffusers) or `architectures[0]` (transformers) this class is built for, legacy names included. */
  readonly classNames: readonly string[];
  /** The class, to find the spec of a built model. */
  readonly type: abstract new (...args: never[]) => M;
  /** Builds the model (weights not allocated) from a config; `file` names the config in errors. */
  fromConfig(config: Record<string, unknown>, file?: string): M;
  /** Runs the model on diffusers-named NCHW inputs and returns diffusers-named outputs (the caller disposes them). */
  run(model: M, inputs: NamedTensors, opts: RunOptions): NamedTensors;
  /** Small seeded inputs that exercise every output (the caller disposes them). */
  sampleInputs(model: M): NamedTensors;
  /** MACs of one forward for one sample (denoisers only). */
  macs?(model: M, o: MacOptions): ForwardMacs;
}

/** The input `name` (diffusers' argument name), or an error listing what was given. */
function need(inputs: NamedTensors, name: string, cls: string): tf.Tensor {
  const t = inputs[name];
  if (!t) throw new Error(`${cls} needs an input tensor named "${name}" (inputs present: ${Object.keys(inputs).join(', ') || 'none'})`);
  return t;
}

const randn = (shape: number[], seed: number): tf.Tensor => tf.randomNormal(shape, 0, 1, 'float32', seed);

/** Deterministic token ids in [0, vocab). */
function tokenIds(batch: number, length: number, vocab: number, seed: number): tf.Tensor2D {
  let s = seed >>> 0;
  const rows = Array.from({ length: batch }, () => Array.from({ length }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s % vocab;
  }));
  return tf.tensor2d(rows, [batch, length], 'int32');
}

const spec = <M extends Module>(s: ModelSpec<M>): ModelSpec => s as unknown as ModelSpec;

/** SDXL's text-time inputs for a `size`-latent sample, when the config has them. */
function textTimeInputs(c: TextTimeConfig, size: number): NamedTensors {
  if (c.additionEmbedType !== 'text_time') return {};
  return {
    text_embeds: randn([1, c.projectionClassEmbeddingsInputDim! - 6 * c.additionTimeEmbedDim!], 3),
    time_ids: tf.tensor2d([[8 * size, 8 * size, 0, 0, 8 * size, 8 * size]]),
  };
}

const unet = spec<UNet2DConditionModel>({
  classNames: ['UNet2DConditionModel'],
  type: UNet2DConditionModel,
  fromConfig: (c, f) => UNet2DConditionModel.fromConfig(c, f),
  run: (m, x) => ({
    sample: m.forward({
      sample: need(x, 'sample', 'UNet2DConditionModel'), timestep: need(x, 'timestep', 'UNet2DConditionModel'),
      encoderHiddenStates: need(x, 'encoder_hidden_states', 'UNet2DConditionModel'), textEmbeds: x.text_embeds, timeIds: x.time_ids,
      timestepCond: x.timestep_cond, encoderAttentionMask: x.encoder_attention_mask,
    }),
  }),
  sampleInputs: (m) => {
    const c = m.config;
    const s = 2 * m.downscaleFactor;
    const o: NamedTensors = {
      sample: randn([1, c.inChannels, s, s], 1), timestep: tf.scalar(500, 'int32'), encoder_hidden_states: randn([1, 8, c.crossAttentionDim[0]], 2),
      ...textTimeInputs(c, s),
    };
    if (c.timeCondProjDim) o.timestep_cond = randn([1, c.timeCondProjDim], 4);
    return o;
  },
  macs: (m, o) => unetMacs(m.config, o),
});

const controlnet = spec<ControlNetModel>({
  classNames: ['ControlNetModel'],
  type: ControlNetModel,
  fromConfig: (c, f) => ControlNetModel.fromConfig(c, f),
  run: (m, x) => {
    const scalar = (name: string) => (x[name] ? x[name].dataSync()[0] : undefined);
    const out = m.forward({
      sample: need(x, 'sample', 'ControlNetModel'), timestep: need(x, 'timestep', 'ControlNetModel'),
      encoderHiddenStates: need(x, 'encoder_hidden_states', 'ControlNetModel'), controlnetCond: need(x, 'controlnet_cond', 'ControlNetModel'),
      conditioningScale: scalar('conditioning_scale'), guessMode: !!scalar('guess_mode'),
      encoderAttentionMask: x.attention_mask, textEmbeds: x.text_embeds, timeIds: x.time_ids,
    });
    const named: NamedTensors = { mid_block_res_sample: out.midBlockResSample };
    out.downBlockResSamples.forEach((t, k) => { named[`down_block_res_samples.${k}`] = t; });
    return named;
  },
  sampleInputs: (m) => {
    const c = m.config;
    const s = 2 * 2 ** (c.blockOutChannels.length - 1);
    const f = m.conditioningScaleFactor;
    return {
      sample: randn([1, c.inChannels, s, s], 1), timestep: tf.scalar(500, 'int32'), encoder_hidden_states: randn([1, 8, c.crossAttentionDim[0]], 2),
      controlnet_cond: tf.randomUniform([1, c.conditioningChannels, s * f, s * f], 0, 1, 'float32', 4), ...textTimeInputs(c, s),
    };
  },
  macs: (m, o) => controlnetMacs(m.config, o),
});

const pixart = spec<PixArtTransformer2DModel>({
  // The original PixArt-α release saves its transformer as Transformer2DModel (norm_type "ada_norm_single").
  classNames: ['PixArtTransformer2DModel', 'Transformer2DModel'],
  type: PixArtTransformer2DModel,
  fromConfig: (c, f) => PixArtTransformer2DModel.fromConfig(c, f),
  run: (m, x) => ({
    sample: m.forward({
      hiddenStates: need(x, 'hidden_states', 'PixArtTransformer2DModel'), timestep: need(x, 'timestep', 'PixArtTransformer2DModel'),
      encoderHiddenStates: need(x, 'encoder_hidden_states', 'PixArtTransformer2DModel'), encoderAttentionMask: x.encoder_attention_mask,
      resolution: x.resolution, aspectRatio: x.aspect_ratio,
    }),
  }),
  sampleInputs: (m) => {
    const c = m.config;
    const s = 4 * c.patchSize;
    const o: NamedTensors = {
      hidden_states: randn([1, c.inChannels, s, s], 1), timestep: tf.scalar(500, 'int32'),
      encoder_hidden_states: randn([1, 6, c.captionChannels ?? m.innerDim], 2),
    };
    if (c.useAdditionalConditions) {
      o.resolution = tf.tensor2d([[8 * s, 8 * s]]);
      o.aspect_ratio = tf.tensor2d([[1]]);
    }
    return o;
  },
  macs: (m, o) => pixartMacs(m.config, o),
});

const vae = spec<AutoencoderKL>({
  classNames: ['AutoencoderKL'],
  type: AutoencoderKL,
  fromConfig: (c, f) => AutoencoderKL.fromConfig(c, f),
  run: (m, x, { mode = 'decode' }): NamedTensors => {
    if (mode === 'decode') return { sample: m.decode(need(x, 'latents', 'AutoencoderKL')) };
    const d = m.encode(need(x, 'sample', 'AutoencoderKL'));
    d.std.dispose();
    return { 'latent_dist.mean': d.mean, 'latent_dist.logvar': d.logvar };
  },
  sampleInputs: (m) => ({ latents: randn([1, m.config.latentChannels, 4, 4], 1) }),
});

/** Both CLIP text models: every hidden state is computed; the outputs keep the last, the penultimate and the heads'. */
function runClip(m: CLIPTextModel | CLIPTextModelWithProjection, x: NamedTensors): NamedTensors {
  const o = m.forward({ inputIds: need(x, 'input_ids', m.constructor.name), outputHiddenStates: true });
  const hs = o.hiddenStates;
  const out: NamedTensors = { last_hidden_state: o.lastHiddenState, penultimate_hidden_state: hs[hs.length - 2] };
  if (o.pooledOutput) out.pooler_output = o.pooledOutput;
  if (o.textEmbeds) out.text_embeds = o.textEmbeds;
  hs.forEach((t) => { if (!Object.values(out).includes(t)) t.dispose(); });
  return out;
}

const textInputs = (m: { config: { vocabSize: number } }): NamedTensors => ({ input_ids: tokenIds(2, 8, m.config.vocabSize, 7) });

const clip = spec<CLIPTextModel>({
  classNames: ['CLIPTextModel'], type: CLIPTextModel, fromConfig: (c, f) => CLIPTextModel.fromConfig(c, f), run: runClip, sampleInputs: textInputs,
});

const clipWithProjection = spec<CLIPTextModelWithProjection>({
  classNames: ['CLIPTextModelWithProjection'], type: CLIPTextModelWithProjection,
  fromConfig: (c, f) => CLIPTextModelWithProjection.fromConfig(c, f), run: runClip, sampleInputs: textInputs,
});

const t5 = spec<T5EncoderModel>({
  classNames: ['T5EncoderModel'],
  type: T5EncoderModel,
  fromConfig: (c, f) => T5EncoderModel.fromConfig(c, f),
  run: (m, x) => ({ last_hidden_state: m.forward({ inputIds: need(x, 'input_ids', 'T5EncoderModel'), attentionMask: x.attention_mask }).lastHiddenState }),
  sampleInputs: textInputs,
});

/** Every model class the package builds. */
export const MODEL_SPECS: readonly ModelSpec[] = [unet, controlnet, pixart, vae, clip, clipWithProjection, t5];

/** `_class_name` → spec. */
export const modelSpecs: ReadonlyMap<string, ModelSpec> = new Map(MODEL_SPECS.flatMap((s) => s.classNames.map((n) => [n, s] as const)));

/** The spec a config's `_class_name` names; an error listing the supported classes otherwise. */
export function specForConfig(config: Record<string, unknown>, file?: string): ModelSpec {
  ConfigReader.of(config, 'model', file);
  const name = config._class_name;
  const s = typeof name === 'string' ? modelSpecs.get(name) : undefined;
  if (!s) {
    throw new ConfigError(`${file ? `${file}: ` : ''}unknown _class_name ${showValue(name)} (supported: ${[...modelSpecs.keys()].join(', ')})`, file, 'model', '_class_name');
  }
  return s;
}

/** The spec of a built model. */
export function specOf(model: Module): ModelSpec {
  const s = MODEL_SPECS.find((x) => model instanceof x.type);
  if (!s) throw new Error(`${model.constructor.name} is not a registered model class (registered: ${[...modelSpecs.keys()].join(', ')})`);
  return s;
}

/** Builds (without weights) the model a config names by `_class_name`; `file` names the config in errors. */
export function modelFromConfig(config: Record<string, unknown>, file?: string): Module {
  return specForConfig(config, file).fromConfig(config, file);
}

/** Runs any registered model on diffusers-named NCHW inputs and returns its named outputs (caller disposes). */
export function runModel(model: Module, inputs: NamedTensors, opts: RunOptions = {}): NamedTensors {
  return specOf(model).run(model, inputs, opts);
}

/** MACs of one forward for one sample of a denoiser (the analytic count bench/ uses). */
export function modelMacs(model: Module, o: MacOptions): ForwardMacs {
  const s = specOf(model);
  if (!s.macs) throw new Error(`${model.constructor.name} has no MAC count (only the denoisers do)`);
  return s.macs(model, o);
}

export { UNet2DConditionModel, ControlNetModel, CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel, AutoencoderKL, PixArtTransformer2DModel };
export type { ForwardMacs, MacOptions };
