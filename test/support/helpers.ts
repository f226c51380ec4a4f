/** Shared test helpers: fixture paths, relative L2 error of tensors (relL2 itself lives in src/eval), backends. */
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { initBackend, type BackendName } from '../../src/backends/index.js';
import { openSafetensors } from '../../src/io/node-source.js';
import { parseJson } from '../../src/io/json.js';
import { relL2 } from '../../src/eval/rel-l2.js';

export { relL2 };

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const fixture = (...p: string[]): string => path.join(FIXTURES, ...p);

export function relL2T(out: tf.Tensor, ref: tf.Tensor): number {
  expect(out.shape).toEqual(ref.shape);
  return relL2(out.dataSync(), ref.dataSync());
}

/** Loads every tensor of a fixture safetensors file (caller disposes). */
export async function loadFixture(rel: string): Promise<Record<string, tf.Tensor>> {
  const f = await openSafetensors(fixture(rel));
  const out: Record<string, tf.Tensor> = {};
  for (const k of f.keys()) out[k] = await f.tensor(k);
  await f.close();
  return out;
}

/** Backends every numeric test runs on; TGATE_TEST_BACKENDS=cpu,wasm,webgpu overrides. */
export const TEST_BACKENDS: BackendName[] = (process.env.TGATE_TEST_BACKENDS ?? 'cpu,wasm').split(',') as BackendName[];

export async function useBackend(name: BackendName): Promise<void> {
  await initBackend(name, { quiet: true });
}

/** Reads JSON written by Python's json module (bare NaN/Infinity allowed). */
export function readPythonJson<T = Record<string, unknown>>(file: string): T {
  return parseJson<T>(readFileSync(file), file);
}
