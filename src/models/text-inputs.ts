/**
 * Token-id inputs of the text encoders (CLIP, T5): reading ids and masks from tensors or nested arrays, the
 * vocabulary check, and the additive value transformers uses for masked positions.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * torch.finfo(float32).min: what transformers adds for masked positions. A finite value (not -Infinity) keeps
 * softmax defined on rows that have no visible key, as in torch.
 */
export const MASK_MIN = -3.4028234663852886e38;

/** Token ids: an int32 tensor [B, L] or nested arrays. */
export type TokenIds = tf.Tensor | number[][];

/** Reads token ids (or a 0/1 mask) into a row-major Int32Array, checking rank, rectangularity and integrality. */
export function readIdRows(x: TokenIds, what: string): { values: Int32Array; batch: number; length: number } {
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2) throw new Error(`${what} must have shape [batch, length], got [${x.shape}]`);
    const data = x.dataSync();
    const values = new Int32Array(data.length);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isInteger(data[i])) throw new Error(`${what} must hold integers, found ${data[i]}`);
      values[i] = data[i];
    }
    return { values, batch: x.shape[0]!, length: x.shape[1]! };
  }
  if (!Array.isArray(x) || x.length === 0 || !x.every(Array.isArray)) throw new Error(`${what} must be a non-empty number[][] or a rank-2 tensor`);
  const length = x[0].length;
  const values = new Int32Array(x.length * length);
  x.forEach((row, b) => {
    if (row.length !== length) throw new Error(`${what}: row ${b} has ${row.length} entries, row 0 has ${length}`);
    row.forEach((v, i) => {
      if (!Number.isInteger(v)) throw new Error(`${what} must hold integers, found ${v} in row ${b}`);
      values[b * length + i] = v;
    });
  });
  return { values, batch: x.length, length };
}

/** Checks every id lies in [0, vocab). */
export function checkVocab(ids: Int32Array, vocab: number, what: string): void {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) throw new Error(`${what}: token id ${ids[i]} is outside the vocabulary [0, ${vocab})`);
  }
}
