/**
 * `tgate convert --verify`: runs each converted component and its diffusers original on the same random
 * inputs and reports the relative L2 error of the outputs (0 for `--quantize none`).
 *
 * Models run one at a time (load, run, dispose), so verifying costs one model's memory.
 */
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import type { Module, WeightSource } from '../src/nn/module.js';
import { modelClasses, modelFromConfig } from '../src/models/registry.js';
import { openComponentWeights, readComponentConfig, readJson } from '../src/io/diffusers-folder.js';
import { openWeights } from '../src/io/component-source.js';
import { runComponent, type NamedTensors } from '../src/models/run-component.js';
import type { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import type { PixArtTransformer2DModel } from '../src/models/pixart-transformer.js';
import type { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import type { CLIPTextModel } from '../src/models/clip-text.js';
import type { T5EncoderModel } from '../src/models/t5-encoder.js';

/** Fixed random inputs for a model, named as diffusers' forward arguments (caller disposes). */
type InputBuilder = (model: Module) => NamedTensors;

/** Deterministic token ids in [0, vocab). */
function ids(batch: number, length: number, vocab: number, seed: number): tf.Tensor2D {
  let s = seed >>> 0;
  const rows = Array.from({ length: batch }, () => Array.from({ length }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s % vocab;
  }));
  return tf.tensor2d(rows, [batch, length], 'int32');
}

const randn = (shape: number[], seed: number): tf.Tensor => tf.randomNormal(shape, 0, 1, 'float32', seed);

const unet: InputBuilder = (m) => {
  const u = m as UNet2DConditionModel;
  const c = u.config;
  const s = 2 * u.downscaleFactor;
  const o: NamedTensors = {
    sample: randn([1, c.inChannels, s, s], 1), timestep: tf.scalar(500, 'int32'),
    encoder_hidden_states: randn([1, 8, c.crossAttentionDim[0]], 2),
  };
  if (c.additionEmbedType === 'text_time') {
    o.text_embeds = randn([1, c.projectionClassEmbeddingsInputDim! - 6 * c.additionTimeEmbedDim!], 3);
    o.time_ids = tf.tensor2d([[8 * s, 8 * s, 0, 0, 8 * s, 8 * s]]);
  }
  if (c.timeCondProjDim) o.timestep_cond = randn([1, c.timeCondProjDim], 4);
  return o;
};

const pixart: InputBuilder = (m) => {
  const p = m as PixArtTransformer2DModel;
  const c = p.config;
  const s = 4 * c.patchSize;
  const o: NamedTensors = {
    hidden_states: randn([1, c.inChannels, s, s], 1), timestep: tf.scalar(500, 'int32'),
    encoder_hidden_states: randn([1, 6, c.captionChannels ?? p.innerDim], 2),
  };
  if (c.useAdditionalConditions) {
    o.resolution = tf.tensor2d([[8 * s, 8 * s]]);
    o.aspect_ratio = tf.tensor2d([[1]]);
  }
  return o;
};

const vae: InputBuilder = (m) => ({ latents: randn([1, (m as AutoencoderKL).config.latentChannels, 4, 4], 1) });

const text: InputBuilder = (m) => ({ input_ids: ids(2, 8, (m as CLIPTextModel | T5EncoderModel).config.vocabSize, 7) });

/** Random-input builders by `_class_name`; the outputs come from the same runComponent as `tgate forward`. */
export const INPUT_BUILDERS: Record<string, InputBuilder> = {
  UNet2DConditionModel: unet,
  AutoencoderKL: vae,
  PixArtTransformer2DModel: pixart,
  Transformer2DModel: pixart,
  CLIPTextModel: text,
  CLIPTextModelWithProjection: text,
  T5EncoderModel: text,
};

export interface VerifyResult {
  component: string;
  className: string;
  /** Worst relative L2 error over the outputs; absent when skipped. */
  relError?: number;
  skipped?: string;
}

async function runWith(cfg: Record<string, unknown>, src: WeightSource & { close(): Promise<void> }, build: InputBuilder): Promise<Float32Array[]> {
  const model = modelFromConfig(cfg);
  try {
    await model.loadStateDict(src);
    const inputs = build(model);
    const outs = Object.values(runComponent(model, inputs));
    const data = outs.map((o) => o.dataSync().slice() as Float32Array);
    tf.dispose([...outs, ...Object.values(inputs)]);
    return data;
  } finally {
    await src.close();
    model.dispose();
  }
}

function relL2(a: Float32Array, b: Float32Array): number {
  let num2 = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num2 += (a[i] - b[i]) ** 2;
    den += b[i] * b[i];
  }
  return den === 0 ? Math.sqrt(num2) : Math.sqrt(num2 / den);
}

/** Compares one converted component folder with its diffusers folder on random inputs (current backend). */
export async function verifyComponent(srcDir: string, convertedDir: string, opts: { variant?: string; name?: string } = {}): Promise<VerifyResult> {
  const cfg = await readComponentConfig(srcDir);
  const className = String(cfg._class_name);
  const component = opts.name ?? path.basename(srcDir);
  if (!modelClasses.has(className)) return { component, className, skipped: `class ${className} is not registered` };
  const run = INPUT_BUILDERS[className];
  if (!run) return { component, className, skipped: `no random-input builder for ${className}` };
  const ref = await runWith(cfg, await openComponentWeights(srcDir, opts.variant), run);
  const got = await runWith(cfg, await openWeights(convertedDir), run);
  let worst = 0;
  ref.forEach((r, i) => { worst = Math.max(worst, relL2(got[i], r)); });
  return { component, className, relError: worst };
}

/** Verifies every converted component of `out` (a pipeline or a single component) against `src`. */
export async function verifyConversion(src: string, out: string, opts: { variant?: string; onResult?: (r: VerifyResult) => void } = {}): Promise<VerifyResult[]> {
  const results: VerifyResult[] = [];
  const push = (r: VerifyResult): void => { results.push(r); opts.onResult?.(r); };
  const { exists } = await import('../src/io/diffusers-folder.js');
  if (!(await exists(path.join(out, 'model_index.json')))) {
    push(await verifyComponent(src, out, { variant: opts.variant, name: path.basename(path.resolve(src)) }));
    return results;
  }
  const index = await readJson(path.join(out, 'model_index.json'));
  for (const [name, v] of Object.entries(index)) {
    if (name.startsWith('_') || !Array.isArray(v) || v[0] == null) continue;
    if (!(await exists(path.join(out, name, 'model.json')))) continue;
    push(await verifyComponent(path.join(src, name), path.join(out, name), { variant: opts.variant, name }));
  }
  return results;
}
