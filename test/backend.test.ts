import * as tf from '@tensorflow/tfjs-core';
import { initBackend, probeBackends } from '../src/backends/index.js';

test('wasm backend computes a matMul like cpu', async () => {
  const a = tf.tensor2d([[1, 2], [3, 4]]);
  const r = await initBackend('wasm', { quiet: true });
  expect(r.name).toBe('wasm');
  expect(tf.getBackend()).toBe('wasm');
  const b = tf.tensor2d([[1, 2], [3, 4]]);
  expect(Array.from(tf.matMul(b, b).dataSync())).toEqual([7, 10, 15, 22]);
  await initBackend('cpu', { quiet: true });
  a.dispose();
});

test('auto falls through missing optional backends and says why', async () => {
  const r = await initBackend('auto', { quiet: true });
  expect(['node-gpu', 'node', 'webgpu', 'wasm', 'cpu']).toContain(r.name);
  if (r.name !== 'node-gpu') expect(r.reason).toMatch(/node-gpu unavailable/);
  await initBackend('cpu', { quiet: true });
});

test('an unknown or unavailable backend is an error that names it', async () => {
  await expect(initBackend('bogus' as never)).rejects.toThrow(/unknown backend "bogus"/);
  await expect(initBackend('webgl', { quiet: true })).rejects.toThrow(/webgl.*not available.*browser/);
});

test('probeBackends lists every backend', async () => {
  const p = await probeBackends({ quiet: true });
  expect(p.map((x) => x.name)).toEqual(['node-gpu', 'node', 'webgpu', 'wasm', 'webgl', 'cpu']);
  expect(p.find((x) => x.name === 'cpu')!.available).toBe(true);
  await initBackend('cpu', { quiet: true });
});
