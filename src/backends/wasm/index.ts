/**
 * The wasm backend's set-up: the heap guard (./heap.ts) and its kernel set (backends/kernels.ts). The
 * Node-only part (files from disk, XNNPACK's thread pool) is ./node.ts, loaded only in Node.
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerKernels, type BackendKernels } from '../kernels.js';
import { contiguousRangeWasm, registerContiguousRangeKernel } from './contiguous-range.js';
import { guardWasmHeap } from './heap.js';

const WASM: BackendKernels = {
  contiguousRange: contiguousRangeWasm,
  // One C++ kernel (source index ⌊dst/2⌋, an exact copy); the plain path's Tile is a JS loop on wasm.
  upsampleNearest2x: (x) => tf.image.resizeNearestNeighbor(x, [2 * x.shape[1], 2 * x.shape[2]]),
  // XNNPACK packs matMul's B and conv2d's filter.
  packsWeights: true,
  // bench/attention.ts: per-head 2-D matMuls 1.55–2.5× faster than the batched matMul at 256 queries.
  slowBatchedMatMul: true,
};

/** Guards the heap of the initialised wasm backend and registers its kernels; idempotent (backends/select.ts). */
export function installWasm(): void {
  guardWasmHeap();
  registerContiguousRangeKernel();
  registerKernels('wasm', WASM);
}
