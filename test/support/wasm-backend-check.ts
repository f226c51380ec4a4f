/**
 * Child process for wasm-backend.test.ts: the wasm backend is initialised once per process, so each thread
 * count needs its own. Prints one JSON line: the pool size, seeded matMul and conv2d outputs, and what the
 * heap guard did. That the process exits at all is part of the check (pool threads must not keep it alive).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, WasmHeapError } from '../../src/backends/index.js';
import { seededGemm } from './seeded-gemm.js';

const threads = Number(process.argv[2]);
const workerBefore = typeof (globalThis as Record<string, unknown>).Worker;
const report = await initBackend('wasm', { quiet: true, wasmThreads: threads });
const wasm = await import('@tensorflow/tfjs-backend-wasm');

const { matMul, conv } = await seededGemm();

// A block reserved straight from the allocator grows the heap without touching its pages, so filling it
// costs no memory; then a 2 GiB tensor can no longer fit.
const m = (tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(p: number): void } }).wasm;
const before = tf.memory().numTensors;
const reserved = m._malloc(2.5 * 1024 ** 3);
const ones = tf.ones([1, 1024, 1024]);
const attempt = (reps: number): string => {
  try {
    tf.tile(ones, [reps, 1, 1]).dispose();
    return 'no error';
  } catch (e) {
    return `${e instanceof WasmHeapError ? 'WasmHeapError' : (e as Error).name}: ${(e as Error).message}`;
  }
};
const full = attempt(512);
m._free(reserved);
const over4GiB = attempt(1100);
const total = tf.tidy(() => tf.sum(tf.tile(ones, [2, 1, 1])));
const afterwards = (await total.data())[0];
total.dispose();
ones.dispose();

console.log(JSON.stringify({
  details: report.details, threads: wasm.getThreadsCount(), workerBefore, workerAfter: typeof (globalThis as Record<string, unknown>).Worker,
  matMul, conv, heap: { full, over4GiB, afterwards, leaked: tf.memory().numTensors - before },
}));
