/**
 * One entry point for a component's weights and config, wherever they are: a diffusers component folder
 * (Node), or a folder converted by `tgate convert` (Node path or http(s) URL, browser included).
 */
import type { Module, WeightSource } from '../nn/module.js';
import { offloadWeights, type OffloadOptions } from '../nn/offload.js';
import type { WeightDtype } from '../nn/packed-weight.js';
import { checkWeightDtype } from '../backends/kernels.js';
import { TfjsWeightSource, type TfjsOpenOptions } from './tfjs-format.js';
import { MAX_MODEL_JSON_BYTES } from './tfjs-validate.js';
import { isRemote, joinLocation, nodeFs, readJsonAt } from './location.js';
import { throwIfAborted, type NetOptions } from './http-fetch.js';

export type ClosableWeightSource = WeightSource & { close(): Promise<void> };

export interface OpenWeightsOptions extends TfjsOpenOptions {
  /** diffusers weight variant (`fp16`…); ignored for converted folders. */
  variant?: string;
}

export { joinLocation } from './location.js';

/** Whether a local folder is a converted one (has `model.json`). */
export async function isConvertedFolder(dir: string): Promise<boolean> {
  const { stat } = await nodeFs();
  try { await stat(joinLocation(dir, 'model.json')); return true; } catch { return false; }
}

/** Reads `<dir>/<name>` as JSON (at most `maxBytes`), or fails naming the location when it is missing. */
async function requireJson(dir: string, name: string, o: NetOptions & { maxBytes?: number }): Promise<Record<string, unknown>> {
  const j = await readJsonAt(dir, name, o);
  if (j === undefined) throw new Error(`${joinLocation(dir, name)} not found`);
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
export async function readConfigFile(dirOrUrl: string, opts: NetOptions = {}): Promise<{ config: Record<string, unknown>; file: string }> {
  if (isRemote(dirOrUrl, opts.fetch)) {
    const file = joinLocation(dirOrUrl, 'model.json');
    const j = await requireJson(dirOrUrl, 'model.json', { ...opts, maxBytes: MAX_MODEL_JSON_BYTES });
    const meta = (j.userDefinedMetadata as { tgate?: { config?: Record<string, unknown>; className?: string } } | undefined)?.tgate;
    if (!meta?.config || typeof meta.config !== 'object') throw new Error(`${file} has no tgate config (not written by tgate convert?)`);
    return { config: { _class_name: meta.className, ...meta.config }, file };
  }
  const { readComponentConfig } = await import('./diffusers-folder.js');
  return { config: await readComponentConfig(dirOrUrl), file: joinLocation(dirOrUrl, 'config.json') };
}

/** Reads a component's config (with `_class_name`); see {@link readConfigFile}. */
export async function readConfig(dirOrUrl: string, opts: NetOptions = {}): Promise<Record<string, unknown>> {
  return (await readConfigFile(dirOrUrl, opts)).config;
}

/** Reads a pipeline's `model_index.json` from a folder or URL. */
export async function readModelIndex(dirOrUrl: string, opts: NetOptions = {}): Promise<Record<string, unknown>> {
  return requireJson(dirOrUrl, 'model_index.json', opts);
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
  let src: ClosableWeightSource;
  try {
    src = await openWeights(dirOrUrl, opts);
  } catch (e) {
    model.dispose();
    throw e;
  }
  try {
    await model.loadStateDict(src, {
      // A local load has no request to abort: stop it between tensors.
      onProgress: (done, total) => { throwIfAborted(opts.signal, dirOrUrl); opts.onTensor?.(done, total); },
    });
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await src.close();
  }
  return model;
}
