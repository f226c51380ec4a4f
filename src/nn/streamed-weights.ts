/**
 * Linear and Conv2d weights held in the layout the streamed GEMM reads (layers/gemm.ts): [out, in] for a
 * Linear, [O, kh·kw·I] for a Conv2d (columns in tap, channel order, as gemm.ts's im2col rows). Ours is the
 * transpose of that: [in, out], and HWIO viewed as [kh·kw·I, O].
 *
 * A parameter is converted in place on its first streamed use: `p.value` is replaced by the streamed tensor
 * and the loaded one is freed, so the weight never exists twice for long. Which tensors are streamed is
 * tracked per tensor, so a tensor that later replaces it (a new load, an offload upload) is known to be in
 * our layout without anyone telling us. Code that reads Linear/Conv2d weights back must use
 * {@link weightInOurLayout}.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Parameter } from './module.js';
import { transpose2d } from './transpose2d.js';

const streamedTensors = new WeakSet<tf.Tensor>();

/** The weight's 2-D view in our layout: [in, out], or [kh·kw·I, O]. */
function oursAs2d(p: Parameter): [number, number] {
  const s = p.shape;
  return s.length === 2 ? [s[0], s[1]] : [s[0] * s[1] * s[2], s[3]];
}

/** [rows, cols] → [cols, rows] reshaped to `shape`, disposing `src` (when `free`) as soon as it has been read. */
function transposed(src: tf.Tensor, rows: number, cols: number, shape: number[], free: boolean): tf.Tensor {
  // The view shares src's data: once src is released, the first pass of transpose2d frees it.
  const view = tf.reshape(src, [rows, cols]) as tf.Tensor2D;
  if (free) src.dispose();
  const t = transpose2d(view, true);
  const out = tf.reshape(t, shape);
  t.dispose();
  return out;
}

/**
 * Replaces `p.value` by its transpose, freeing the loaded tensor as soon as it has been read: converting
 * costs one extra copy of one weight in flight, never two of everything (SD-1.5 fills 3.3 of the ~3.9 GiB
 * wasm heap).
 */
function replaceByTranspose(p: Parameter, rows: number, cols: number, shape: number[]): tf.Tensor {
  const next = transposed(p.value!, rows, cols, shape, true);
  p.value = tf.keep(next);
  return next;
}

/**
 * The parameter's weight as the streamed GEMM reads it, converting the loaded tensor in place on first use.
 */
export function streamedWeight(p: Parameter): tf.Tensor2D {
  const src = p.t;
  if (streamedTensors.has(src)) return src as tf.Tensor2D;
  const [rows, cols] = oursAs2d(p);
  const out = replaceByTranspose(p, rows, cols, [cols, rows]);
  streamedTensors.add(out);
  return out as tf.Tensor2D;
}

/** The parameter's weight in our layout ([in,out] / HWIO), converting a streamed one back in place. */
export function packedWeight(p: Parameter): tf.Tensor {
  const src = p.t;
  if (!streamedTensors.has(src)) return src;
  const [rows, cols] = oursAs2d(p);
  return replaceByTranspose(p, cols, rows, p.shape);
}

/** Whether `t` is held in the streamed layout (converted here, or created by {@link streamedFromValues}). */
export function isStreamed(t: tf.Tensor): boolean {
  return streamedTensors.has(t);
}

/**
 * The parameter's tensor from values already in the streamed layout: an offloaded weight's converted copy
 * (nn/offload.ts), so uploading it again costs no transpose.
 */
export function streamedFromValues(p: Parameter, values: Float32Array): tf.Tensor2D {
  const [rows, cols] = oursAs2d(p);
  const t = tf.tensor2d(values, [cols, rows], 'float32');
  streamedTensors.add(t);
  return t;
}

/**
 * A copy of the parameter's weight in our layout, whichever layout it is held in (the caller disposes it):
 * what code that reads Linear/Conv2d weights back (saving, offloading a model that has run) must use.
 */
export function weightInOurLayout(p: Parameter): tf.Tensor {
  const t = p.t;
  if (!streamedTensors.has(t)) return t.clone();
  const [rows, cols] = oursAs2d(p);
  return transposed(t, cols, rows, p.shape, false);
}
