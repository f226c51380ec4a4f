/** Files the commands read and write: tensors as safetensors (written atomically), PNG inputs. */
import { readFile, stat } from 'node:fs/promises';
import type * as tf from '@tensorflow/tfjs-core';
import { openSafetensors } from '../io/node-source.js';
import { encodeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/node-write.js';
import { decodePNG, type RGBImage } from '../io/png.js';

export { writeFileAtomic };

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

export async function writeTensors(file: string, tensors: Record<string, tf.Tensor>): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors));
}

/** The largest PNG file the commands read (a 64-megapixel image stored without compression is ~200 MB). */
const MAX_PNG_FILE_BYTES = 512 * 2 ** 20;

/** Reads and decodes a PNG file; `flag` names the option it came from in errors. */
export async function readPNG(file: string, flag: string): Promise<RGBImage> {
  let bytes: Uint8Array;
  try {
    const s = await stat(file);
    if (!s.isFile()) throw new Error('not a file');
    if (s.size > MAX_PNG_FILE_BYTES) throw new Error(`${s.size} bytes, more than the ${MAX_PNG_FILE_BYTES} read`);
    bytes = await readFile(file);
  } catch (e) {
    throw new Error(`${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return decodePNG(bytes, `${flag} ${file}`);
}
