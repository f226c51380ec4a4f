/**
 * Reading rows of an embedding table, whichever form the backend holds it in (nn/packed-weight.ts): one
 * float32 tensor (tf.gather), row pieces of a table larger than one binding, or packed float16 halves (the
 * backend's gather kernel), piece after piece.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Parameter } from '../nn/module.js';
import { halfKernel } from './gemm.js';

/** Rows `ids` (int32, any shape) of the [rows, dim] table `p`: shape [...ids.shape, dim]. */
export function gatherRows(p: Parameter, ids: tf.Tensor): tf.Tensor {
  if (!p.isPacked) return tf.gather(p.t, ids);
  return tf.tidy(() => {
    const w = p.stored;
    const dim = w.rowSize;
    const flat = tf.cast(ids.reshape([ids.size]), 'int32');
    let out: tf.Tensor | null = null;
    for (const [i, piece] of w.pieces.entries()) {
      const start = i * w.rowsPerPiece;
      const rows = w.pieceRows(i);
      if (w.dtype === 'float16') {
        out = halfKernel('gatherHalf')(piece, rows, dim, flat, start, out);
        continue;
      }
      // float32 pieces: each id is read from the one piece holding it (ids elsewhere are clamped, then not
      // selected). Clamped with int32 maximum/minimum: wasm's ClipByValue reads an int32 tensor's bits as float32.
      const local = tf.sub(flat, tf.scalar(start, 'int32'));
      const clamped = tf.minimum(tf.maximum(local, tf.scalar(0, 'int32')), tf.scalar(rows - 1, 'int32'));
      const rowsOf = tf.gather(piece, clamped);
      out = out ? tf.where(tf.logicalAnd(tf.greaterEqual(local, 0), tf.less(local, rows)).expandDims(1), rowsOf, out) : rowsOf;
    }
    return out!.reshape([...ids.shape, dim]);
  });
}
