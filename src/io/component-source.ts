/**
 * One entry point for a component's weights and config, wherever they are: a diffusers component folder
 * (Node), or a folder converted by `tgate convert` (Node path or http(s) URL, browser included).
 */
import type { Module, WeightSource } from '../nn/module.js';
import { offloadWeights, type OffloadOptions } from '../nn/offload.js';
import type { WeightDtype } from '../nn/packed-weight.js';
import { checkWeightDtype } from '../backends/kernels.js';
import { TfjsWeightSource, type TfjsOpenOptions } from './tfjs-format.js';
import { isRemote, joinLocation, readJsonAt } from './location.js';

export type ClosableWeightSource = WeightSource & { close(): Promise<void> };

export interface OpenWeightsOptions extends TfjsOpenOptions {
  /** diffusers weight variant (`fp16`…); ignored for converted folders. */
  variant?: string;
}

export { joinLocation } from './location.js';

// A variable specifier: bundlers leave node:fs out of the browser build.
const NODE_FS = 'node:fs/promises';

/** Whether a local folder is a converted one (has `model.json`). */
export async function isConvertedFolder(dir: string): Promise<boolean> {
  const { stat } = (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS)) as typeof import('node:fs/promises');
  try { await stat(joinLocation(dir, 'model.json')); return true; } catch { return false; }
}

/** Reads `<dir>/<name>` as JSON, or fails naming the location when it is missing. */
async function requireJson(dir: string, name: string, fetchFn?: typeof fetch): Promise<Record<string, unknown>> {
  const j = await readJsonAt(dir, name, fetchFn);
  if (!j) throw new Error(`${joinLocation(dir, name)} not found`);
  return j;
}

/**
 * Opens a component's weights: a URL (or anything in a browser) must be a converted folder; a local folder
 * with `model.json` is read as converted, otherwise as a diffusers folder (safetensors, variants, shards).
 * Close the source after loading.
 */
export async function openWeights(dirOrUrl: string, opts: OpenWeightsOptions = {}): Promise<ClosableWeightSource> {
  if (isRemote(dirOrUrl, opts.fetch) || /\.json$/i.test(dirOrUrl)) return TfjsWeightSource.open(dirOrUrl, opts);
  if (await isConvertedFolder(dirOrUrl)) return TfjsWeightSource.open(dirOrUrl, opts);
  const { openComponentWeights } = await import('./diffusers-folder.js');
  return openComponentWeights(dirOrUrl, opts.variant);
}

/**
 * Reads a component's config (with `_class_name`) and says which file it came from (for error messages):
 * `config.json` of a diffusers or converted folder, or for a URL the config stored in `model.json`.
 */
export async function readConfigFile(dirOrUrl: string, opts: { fetch?: typeof fetch } = {}): Promise<{ config: Record<string, unknown>; file: string }> {
  if (isRemote(dirOrUrl, opts.fetch)) {
    const file = joinLocation(dirOrUrl, 'model.json');
    const j = await requireJson(dirOrUrl, 'model.json', opts.fetch);
    const meta = (j.userDefinedMetadata as { tgate?: { config?: Record<string, unknown>; className?: string } } | undefined)?.tgate;
    if (!meta?.config || typeof meta.config !== 'object') throw new Error(`${file} has no tgate config (not written by tgate convert?)`);
    return { config: { _class_name: meta.className, ...meta.config }, file };
  }
  const { readComponentConfig } = await import('./diffusers-folder.js');
  return { config: await readComponentConfig(dirOrUrl), file: joinLocation(dirOrUrl, 'config.json') };
}

/** Reads a component's config (with `_class_name`); see {@link readConfigFile}. */
export async function readConfig(dirOrUrl: string, opts: { fetch?: typeof fetch } = {}): Promise<Record<string, unknown>> {
  return (await readConfigFile(dirOrUrl, opts)).config;
}

/** Reads a pipeline's `model_index.json` from a folder or URL. */
export async function readModelIndex(dirOrUrl: string, opts: { fetch?: typeof fetch } = {}): Promise<Record<string, unknown>> {
  return requireJson(dirOrUrl, 'model_index.json', opts.fetch);
}

/**
 * Builds a model from a component's config with `build` (which gets the config and its file name, for
 * errors) and loads the component's weights into it; the model is disposed if loading fails.
 */
export async function buildAndLoad<M extends Module>(
  dirOrUrl: string, build: (config: Record<string, unknown>, file: string) => M, opts: LoadWeightsOptions = {},
): Promise<M> {
  const { config, file } = await readConfigFile(dirOrUrl, opts);
  return loadWeightsInto(build(config, file), dirOrUrl, opts);
}

export type LoadWeightsOptions = OpenWeightsOptions & {
  onTensor?: (done: number, total: number) => void;
  /**
   * Weight offload (nn/offload.ts): the weights of each unit are read into JS memory, never into the backend,
   * and uploaded only while the unit's forward runs; `true` uses the default unit size (512 MiB). For models
   * larger than the backend's memory (wasm's ~3.9 GiB heap). `offloadHandle(model)` gives units and stats.
   */
  offload?: boolean | OffloadOptions;
  /** 'float16': Linear, Conv2d and Embedding weights held as packed halves (WebGPU only; nn/packed-weight.ts). */
  weightDtype?: WeightDtype;
};

/** Loads a component's weights into a model built from its config; disposes the model if loading fails. */
export async function loadWeightsInto<M extends Module>(model: M, dirOrUrl: string, opts: LoadWeightsOptions = {}): Promise<M> {
  if (opts.weightDtype) {
    checkWeightDtype(opts.weightDtype);
    model.setWeightDtype(opts.weightDtype);
  }
  if (opts.offload) offloadWeights(model, opts.offload === true ? {} : opts.offload);
  const src = await openWeights(dirOrUrl, opts);
  try {
    await model.loadStateDict(src, { onProgress: opts.onTensor });
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await src.close();
  }
  return model;
}
