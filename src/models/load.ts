/** `loadModel(dirOrUrl)`: the model a component folder's config names, with its weights. */
import type { Module } from '../nn/module.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { modelFromConfig } from './registry.js';

/**
 * Builds the model a component's config names by `_class_name` and loads its weights (strict key and shape
 * checks): a diffusers component folder (Node) or a folder written by `tgate convert` (Node path or http(s)
 * URL). `opts` as a string is the weight variant (the older signature). The model is disposed if loading fails.
 */
export function loadModel<M extends Module = Module>(dirOrUrl: string, opts: string | LoadWeightsOptions = {}): Promise<M> {
  return buildAndLoad(dirOrUrl, (config, file) => modelFromConfig(config, file) as M, typeof opts === 'string' ? { variant: opts } : opts);
}
