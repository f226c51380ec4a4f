/**
 * A contiguous copy for wasm. tfjs-backend-wasm's Slice first reads its whole input out of the heap into a
 * fresh JS array (`readSync`), then copies the part it wants: taking every head of q, k and v, or both halves
 * of GEGLU's projection, copied each input once per piece and left that much garbage. Here a contiguous
 * range is one `copyWithin` inside the heap.
 */
import * as tf from '@tensorflow/tfjs-core';
import { currentHeap } from './heap.js';

const KERNEL = 'TgateContiguousRange';

interface WasmBackend {
  dataIdMap: { get(id: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  wasm: { HEAPU8: Uint8Array; wasmMemory?: WebAssembly.Memory };
}

/** Registers the TF.js kernel behind {@link contiguousRangeWasm} (idempotent). */
export function registerContiguousRangeKernel(): void {
  if (tf.getKernel(KERNEL, 'wasm')) return;
  tf.registerKernel({
    kernelName: KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const x = inputs.x as tf.TensorInfo;
      const { start, shape } = attrs as unknown as { start: number; shape: number[] };
      const out = b.makeOutput(shape, x.dtype);
      const bytes = 4 * shape.reduce((p, d) => p * d, 1);
      // Offsets are read after makeOutput, which may have grown (and moved) the heap.
      const from = b.dataIdMap.get(x.dataId).memoryOffset + 4 * start;
      currentHeap(b.wasm).copyWithin(b.dataIdMap.get(out.dataId).memoryOffset, from, from + bytes);
      return out;
    },
  });
}

/** Elements [start, start + size(shape)) of a float32 x (range already checked); null for other dtypes. */
export function contiguousRangeWasm(x: tf.Tensor, start: number, shape: number[]): tf.Tensor | null {
  if (x.dtype !== 'float32') return null;
  return tf.engine().runKernel(KERNEL, { x }, { start, shape } as unknown as tf.NamedAttrMap) as tf.Tensor;
}
