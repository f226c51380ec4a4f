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

/** Runs a model on fixed random inputs; returns its outputs (caller disposes). */
type InputRunner = (model: Module, cfg: Record<string, unknown>) => tf.Tensor[];

/** Deterministic token ids in [0, vocab). */
function ids(batch: number, length: number, vocab: number, seed: number): number[][] {
  let s = seed >>> 0;
  return Array.from({ length: batch }, () => Array.from({ length }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s % vocab;
  }));
}

// The forward signatures live with each model class; this table only knows which random inputs to feed.
interface UNetLike { config: { inChannels: number; crossAttentionDim: number[]; additionEmbedType: string | null; additionTimeEmbedDim: number | null; projectionClassEmbeddingsInputDim: number | null; timeCondProjDim: number | null }; downscaleFactor: number; forward(o: Record<string, unknown>): tf.Tensor }
interface PixArtLike { config: { inChannels: number; patchSize: number; captionChannels: number | null; crossAttentionDim: number; useAdditionalConditions: boolean }; forward(o: Record<string, unknown>): tf.Tensor }
interface VaeLike { config: { latentChannels: number }; decode(z: tf.Tensor): tf.Tensor }
interface TextLike { config: { vocabSize: number }; forward(o: Record<string, unknown>): { lastHiddenState: tf.Tensor; hiddenStates?: tf.Tensor[]; pooledOutput?: tf.Tensor; textEmbeds?: tf.Tensor } }

const unet: InputRunner = (m) => {
  const u = m as unknown as UNetLike;
  const c = u.config;
  const s = 2 * u.downscaleFactor;
  const o: Record<string, unknown> = {
    sample: tf.randomNormal([1, c.inChannels, s, s], 0, 1, 'float32', 1),
    timestep: 500,
    encoderHiddenStates: tf.randomNormal([1, 8, c.crossAttentionDim[0]], 0, 1, 'float32', 2),
  };
  if (c.additionEmbedType === 'text_time') {
    o.textEmbeds = tf.randomNormal([1, (c.projectionClassEmbeddingsInputDim ?? 0) - 6 * (c.additionTimeEmbedDim ?? 0)], 0, 1, 'float32', 3);
    o.timeIds = tf.tensor2d([[8 * s, 8 * s, 0, 0, 8 * s, 8 * s]]);
  }
  if (c.timeCondProjDim) o.timestepCond = tf.randomNormal([1, c.timeCondProjDim], 0, 1, 'float32', 4);
  return [u.forward(o)];
};

const pixart: InputRunner = (m) => {
  const p = m as unknown as PixArtLike;
  const c = p.config;
  const s = 4 * c.patchSize;
  const o: Record<string, unknown> = {
    hiddenStates: tf.randomNormal([1, c.inChannels, s, s], 0, 1, 'float32', 1),
    timestep: 500,
    encoderHiddenStates: tf.randomNormal([1, 6, c.captionChannels ?? c.crossAttentionDim], 0, 1, 'float32', 2),
  };
  if (c.useAdditionalConditions) {
    o.resolution = [[8 * s, 8 * s]];
    o.aspectRatio = [[1]];
  }
  return [p.forward(o)];
};

const vaeDecode: InputRunner = (m) => {
  const v = m as unknown as VaeLike;
  return [v.decode(tf.randomNormal([1, v.config.latentChannels, 4, 4], 0, 1, 'float32', 1))];
};

const text: InputRunner = (m) => {
  const t = m as unknown as TextLike;
  const r = t.forward({ inputIds: ids(2, 8, t.config.vocabSize, 7), outputHiddenStates: false });
  const outs = [r.lastHiddenState, r.pooledOutput, r.textEmbeds].filter((x): x is tf.Tensor => !!x);
  for (const h of r.hiddenStates ?? []) if (!outs.includes(h)) h.dispose();
  return outs;
};

/** Random-input runners by `_class_name`. */
export const INPUT_BUILDERS: Record<string, InputRunner> = {
  UNet2DConditionModel: unet,
  AutoencoderKL: vaeDecode,
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

async function runWith(cfg: Record<string, unknown>, src: WeightSource & { close(): Promise<void> }, run: InputRunner): Promise<Float32Array[]> {
  const model = modelFromConfig(cfg);
  try {
    await model.loadStateDict(src);
    const outs = run(model, cfg);
    const data = outs.map((o) => o.dataSync().slice() as Float32Array);
    outs.forEach((o) => o.dispose());
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
