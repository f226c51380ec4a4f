/** Helpers shared by the CLI commands: backend option, tensor files, atomic writes, progress bar. */
import { rename, writeFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as tf from '@tensorflow/tfjs-core';
import { BACKENDS, initBackend, type BackendChoice } from '../backends/index.js';
import { openSafetensors } from '../io/node-source.js';
import { encodeSafetensors } from '../io/safetensors.js';

export const backendOption = {
  backend: { choices: ['auto', ...BACKENDS], default: 'auto', describe: 'TF.js backend' },
  threads: { type: 'number', describe: 'wasm: XNNPACK threads, 1-8 (default: every CPU; env TGATE_WASM_THREADS)' },
} as const;

export async function setupBackend(choice: string, wasmThreads?: number): Promise<void> {
  await initBackend(choice as BackendChoice, { wasmThreads });
}

/** Reads every tensor of a safetensors file (caller disposes). */
export async function readTensors(file: string): Promise<Record<string, tf.Tensor>> {
  const f = await openSafetensors(file);
  try {
    const out: Record<string, tf.Tensor> = {};
    for (const k of f.keys()) out[k] = await f.tensor(k);
    return out;
  } finally {
    await f.close();
  }
}

/** Writes a file through a temporary sibling and a rename, so a failure never leaves half a file. */
export async function writeAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw new Error(`cannot write ${file}: ${(e as Error).message}`);
  }
}

export async function writeTensors(file: string, tensors: Record<string, tf.Tensor>): Promise<void> {
  await writeAtomic(file, encodeSafetensors(tensors));
}

/** A one-line progress bar on stderr (plain lines when stderr is not a terminal). */
export function progressBar(label: string): (done: number, total: number, extra?: string) => void {
  let last = -1;
  return (done, total, extra = '') => {
    const pct = Math.floor((100 * done) / total);
    if (process.stderr.isTTY) {
      const w = 30;
      const fill = Math.round((w * done) / total);
      process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${done}/${total} ${extra}`);
      if (done === total) process.stderr.write('\n');
    } else if (pct !== last && (pct % 25 === 0 || done === total)) {
      process.stderr.write(`${label} ${done}/${total} ${extra}\n`);
    }
    last = pct;
  };
}

/** The package root (where assets/ lives), from dist/src/cli or src/cli. */
export function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '../../..') : path.resolve(here, '../..');
}

/** The bundled demo pipeline. */
export const demoModelDir = (): string => path.join(packageRoot(), 'assets', 'tiny-shapes');
