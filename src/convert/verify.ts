/**
 * `tgate convert --verify`: runs each converted component and its diffusers original on the same seeded
 * inputs (the model spec's sample inputs, run as `tgate forward` runs them) and reports the relative L2 error
 * of the outputs (0 for `--quantize none`).
 *
 * Models run one at a time (load, run, dispose), so verifying costs one model's memory.
 */
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import type { WeightSource } from '../nn/module.js';
import { modelSpecs, type ModelSpec } from '../models/registry.js';
import { exists, openComponentWeights, readComponentConfig, readJson } from '../io/diffusers-folder.js';
import { joinLocation } from '../io/location.js';
import { parseModelIndex } from '../io/model-index.js';
import { openWeights } from '../io/component-source.js';
import { relL2 } from '../eval/rel-l2.js';

export interface VerifyResult {
  component: string;
  className: string;
  /** Worst relative L2 error over the outputs; absent when skipped. */
  relError?: number;
  skipped?: string;
}

/** Builds the model, loads `src` into it and runs it on the spec's sample inputs; returns every output's values. */
async function runWith(spec: ModelSpec, cfg: Record<string, unknown>, src: WeightSource & { close(): Promise<void> }): Promise<Float32Array[]> {
  const model = spec.fromConfig(cfg);
  try {
    await model.loadStateDict(src);
    const inputs = spec.sampleInputs(model);
    const outs = Object.values(spec.run(model, inputs, {}));
    const data = outs.map((o) => o.dataSync().slice() as Float32Array);
    tf.dispose([...outs, ...Object.values(inputs)]);
    return data;
  } finally {
    await src.close();
    model.dispose();
  }
}

/** Compares one converted component folder with its diffusers folder on the spec's sample inputs (current backend). */
export async function verifyComponent(srcDir: string, convertedDir: string, opts: { variant?: string; name?: string } = {}): Promise<VerifyResult> {
  const cfg = await readComponentConfig(srcDir);
  const className = String(cfg._class_name);
  const component = opts.name ?? path.basename(srcDir);
  const spec = modelSpecs.get(className);
  if (!spec) return { component, className, skipped: `class ${className} is not registered` };
  const ref = await runWith(spec, cfg, await openComponentWeights(srcDir, opts.variant));
  const got = await runWith(spec, cfg, await openWeights(convertedDir));
  let worst = 0;
  ref.forEach((r, i) => { worst = Math.max(worst, relL2(got[i], r)); });
  return { component, className, relError: worst };
}

/** Verifies every converted component of `out` (a pipeline or a single component) against `src`. */
export async function verifyConversion(src: string, out: string, opts: { variant?: string; onResult?: (r: VerifyResult) => void } = {}): Promise<VerifyResult[]> {
  const results: VerifyResult[] = [];
  const push = (r: VerifyResult): void => { results.push(r); opts.onResult?.(r); };
  if (!(await exists(path.join(out, 'model_index.json')))) {
    push(await verifyComponent(src, out, { variant: opts.variant, name: path.basename(path.resolve(src)) }));
    return results;
  }
  const indexFile = path.join(out, 'model_index.json');
  for (const [name, entry] of parseModelIndex(await readJson(indexFile), indexFile).components) {
    if (!entry || !(await exists(path.join(out, name, 'model.json')))) continue;
    push(await verifyComponent(joinLocation(src, name), joinLocation(out, name), { variant: opts.variant, name }));
  }
  return results;
}
