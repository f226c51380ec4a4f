/** Files the commands read and write: tensors as safetensors, and atomic writes. */
import { rename, writeFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { openSafetensors } from '../io/node-source.js';
import { encodeSafetensors } from '../io/safetensors.js';

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
