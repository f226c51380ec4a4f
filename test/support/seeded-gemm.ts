/** Seeded matMul and conv2d outputs on the current backend (wasm-backend.test.ts compares thread counts and backends). */
import * as tf from '@tensorflow/tfjs-core';

export async function seededGemm(): Promise<{ matMul: number[]; conv: number[] }> {
  const [m, c] = tf.tidy((): [tf.Tensor, tf.Tensor] => {
    const a = tf.randomNormal([300, 500], 0, 1, 'float32', 1);
    const b = tf.randomNormal([500, 200], 0, 1, 'float32', 2);
    const x = tf.randomNormal([2, 32, 32, 64], 0, 1, 'float32', 3) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 64, 96], 0, 0.1, 'float32', 4) as tf.Tensor4D;
    return [tf.matMul(a, b), tf.conv2d(x, w, 1, 'same')];
  });
  const out = { matMul: Array.from(await m.data()), conv: Array.from(await c.data()) };
  tf.dispose([m, c]);
  return out;
}
