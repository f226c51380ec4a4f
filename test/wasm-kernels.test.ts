/**
 * The wasm kernel set (src/backends/wasm/index.ts): contiguousRange (src/layers/contiguous-range.ts) copies
 * inside the heap on wasm and equals tf.slice of the flat view; the set is registered by initBackend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { contiguousRange } from '../src/layers/contiguous-range.js';
import { kernels } from '../src/backends/kernels.js';
import { TEST_BACKENDS, useBackend } from './support/helpers.js';

describe.each(TEST_BACKENDS)('contiguousRange on %s', (backend) => {
  beforeAll(async () => { await useBackend(backend); });

  test('the backend\'s kernel set is the one initBackend registered', () => {
    const want = backend === 'wasm' ? ['contiguousRange', 'packsWeights', 'slowBatchedMatMul', 'upsampleNearest2x'] : [];
    expect(Object.keys(kernels()).sort()).toEqual(want);
  });

  test('every head of a [B, H, N, d] tensor equals its slice, and nothing leaks', () => {
    const x = tf.randomNormal([2, 3, 5, 4], 0, 1, 'float32', 1);
    const before = tf.memory().numTensors;
    for (let k = 0; k < 6; k++) {
      const got = contiguousRange(x, k * 20, [5, 4]);
      const want = tf.tidy(() => tf.reshape(tf.slice(x, [Math.floor(k / 3), k % 3, 0, 0], [1, 1, 5, 4]), [5, 4]));
      expect(got.shape).toEqual([5, 4]);
      expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
      tf.dispose([got, want]);
    }
    expect(tf.memory().numTensors).toBe(before);
    // The copy is its own tensor: disposing the source leaves it intact.
    const last = contiguousRange(x, 100, [20]);
    const ref = Array.from(x.dataSync()).slice(100);
    x.dispose();
    expect(Array.from(last.dataSync())).toEqual(ref);
    last.dispose();
  });

  test('a range outside the tensor is an error naming it', () => {
    const x = tf.zeros([4, 4]);
    expect(() => contiguousRange(x, 10, [2, 4])).toThrow(/\[10, 18\) is outside a tensor of 16 elements/);
    expect(() => contiguousRange(x, -1, [1])).toThrow(/outside/);
    x.dispose();
  });
});
