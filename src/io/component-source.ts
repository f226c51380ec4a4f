/**
 * One entry point for a component's weights and config, wherever they are: a diffusers component folder
 * (Node), or a folder converted by `tgate convert` (Node path or http(s) URL, browser included).
 */
import type { Module, WeightSource } from '../nn/module.js';
import { TfjsWeightSource, type TfjsOpenOptions } from './tfjs-format.js';
import { parseJson } from './json.js';

export type ClosableWeightSource = WeightSource & { close(): Promise<void> };

export interface OpenWeightsOptions extends TfjsOpenOptions {
  /** diffusers weight variant (`fp16`…); ignored for converted folders. */
  variant?: string;
}

// A variable specifier: bundlers leave node:fs out of the browser build.
const NODE_FS = 'node:fs/promises';
const isUrl = (s: string): boolean => /^(https?|blob|data|file):/i.test(s);
const inBrowser = (): boolean => typeof window !== 'undefined';

/** Joins a pipeline location and a component name, for paths and URLs alike. */
export function joinLocation(base: string, name: string): string {
  return `${base.replace(/[\\/]+$/, '')}/${name}`;
}

async function localExists(p: string): Promise<boolean> {
  const { stat } = (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS)) as typeof import('node:fs/promises');
  try { await stat(p); return true; } catch { return false; }
}

/** Whether a local folder is a converted one (has `model.json`). */
export async function isConvertedFolder(dir: string): Promise<boolean> {
  return localExists(joinLocation(dir, 'model.json'));
}

/**
 * Opens a component's weights: a URL (or anything in a browser) must be a converted folder; a local folder
 * with `model.json` is read as converted, otherwise as a diffusers folder (safetensors, variants, shards).
 * Close the source after loading.
 */
export async function openWeights(dirOrUrl: string, opts: OpenWeightsOptions = {}): Promise<ClosableWeightSource> {
  if (opts.fetch || isUrl(dirOrUrl) || inBrowser() || /\.json$/i.test(dirOrUrl)) return TfjsWeightSource.open(dirOrUrl, opts);
  if (await isConvertedFolder(dirOrUrl)) return TfjsWeightSource.open(dirOrUrl, opts);
  const { openComponentWeights } = await import('./diffusers-folder.js');
  return openComponentWeights(dirOrUrl, opts.variant);
}

async function fetchJson(url: string, f: typeof fetch): Promise<Record<string, unknown>> {
  const r = await f(url);
  if (!r.ok) throw new Error(`fetching ${url} failed: HTTP ${r.status}`);
  return parseJson(await r.text(), url);
}

/**
 * Reads a component's config (with `_class_name`): `config.json` of a diffusers or converted folder, or
 * for a URL the config stored in `model.json`.
 */
export async function readConfig(dirOrUrl: string, opts: { fetch?: typeof fetch } = {}): Promise<Record<string, unknown>> {
  if (opts.fetch || isUrl(dirOrUrl) || inBrowser()) {
    const j = await fetchJson(joinLocation(dirOrUrl, 'model.json'), opts.fetch ?? fetch);
    const meta = (j.userDefinedMetadata as { tgate?: { config?: Record<string, unknown>; className?: string } } | undefined)?.tgate;
    if (!meta?.config) throw new Error(`${joinLocation(dirOrUrl, 'model.json')} has no tgate config (not written by tgate convert?)`);
    return { _class_name: meta.className, ...meta.config };
  }
  const { readComponentConfig } = await import('./diffusers-folder.js');
  return readComponentConfig(dirOrUrl);
}

/** Reads a pipeline's `model_index.json` from a folder or URL. */
export async function readModelIndex(dirOrUrl: string, opts: { fetch?: typeof fetch } = {}): Promise<Record<string, unknown>> {
  if (opts.fetch || isUrl(dirOrUrl) || inBrowser()) return fetchJson(joinLocation(dirOrUrl, 'model_index.json'), opts.fetch ?? fetch);
  const { readJson } = await import('./diffusers-folder.js');
  return readJson(joinLocation(dirOrUrl, 'model_index.json'));
}

/**
 * Builds the model a component's config names and loads its weights (diffusers or converted folder, path
 * or URL). The model is disposed if loading fails.
 */
export async function loadComponent<M extends Module = Module>(
  dirOrUrl: string, opts: LoadWeightsOptions = {},
): Promise<M> {
  const { modelFromConfig } = await import('../models/registry.js');
  return loadWeightsInto(modelFromConfig(await readConfig(dirOrUrl, opts)) as M, dirOrUrl, opts);
}

export type LoadWeightsOptions = OpenWeightsOptions & { onTensor?: (done: number, total: number) => void };

/** Loads a component's weights into a model built from its config; disposes the model if loading fails. */
export async function loadWeightsInto<M extends Module>(model: M, dirOrUrl: string, opts: LoadWeightsOptions = {}): Promise<M> {
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
