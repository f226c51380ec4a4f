/**
 * A contiguous copy for wasm. tfjs-backend-wasm's Slice first reads its whole input out of the heap into a
 * fresh JS array (`readSync`), then copies the part it wants: taking every head of q, k and v, or both halves
 * of GEGLU's projection, copied each input once per piece and left that much garbage. Here a contiguous
 * range is one `copyWithin` inside the heap. Other backends use a slice of the flat view.
 */
import * as tf from '@tensorflow/tfjs-core';
import { currentHeap } from '../backend-wasm.js';

const KERNEL = 'TgateContiguousRange';

interface WasmBackend {
  dataIdMap: { get(id: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  wasm: { HEAPU8: Uint8Array; wasmMemory?: WebAssembly.Memory };
}

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

/** Elements [start, start + size(shape)) of x's row-major data, as a new tensor of `shape`. */
export function contiguousRange(x: tf.Tensor, start: number, shape: number[]): tf.Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  if (start < 0 || start + size > x.size) throw new Error(`contiguousRange: [${start}, ${start + size}) is outside a tensor of ${x.size} elements`);
  if (tf.getBackend() === 'wasm' && x.dtype === 'float32') {
    return tf.engine().runKernel(KERNEL, { x }, { start, shape } as unknown as tf.NamedAttrMap) as tf.Tensor;
  }
  return tf.tidy(() => tf.reshape(tf.slice(tf.reshape(x, [x.size]), start, size), shape));
}
