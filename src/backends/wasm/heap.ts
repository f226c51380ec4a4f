/**
 * The wasm heap, failing loudly (browser and Node; the Node-only set-up is ./node.ts).
 *
 * wasm32 memory ends at 4 GiB, and there tfjs-backend-wasm's malloc returns 0, which it uses as an
 * address: the tensor is written over the heap's start and nothing says so. Every tensor allocation is
 * checked instead, and one that does not fit throws before anything is written.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The wasm heap cannot grow past 4 GiB (wasm32); in practice allocation fails near 3.9 GiB. */
export const WASM_HEAP_LIMIT_BYTES = 3.9 * 1024 ** 3;

/** What the allocator says when a tensor does not fit: the weights (loading) are the usual cause. */
const WEIGHTS_REMEDY = 'Load the model with offload (`offload: true`, `tgate generate --offload`), generate at a smaller ' +
  'size, or use another backend.';

/**
 * Thrown when a tensor does not fit in the wasm heap; nothing was allocated. A generation restates it with
 * `during` and the size options as `remedy` (pipelines/call-guard.ts).
 */
export class WasmHeapError extends Error {
  constructor(readonly requestedBytes: number, readonly heapBytes: number, o: { during?: string; remedy?: string } = {}) {
    super(`wasm heap exhausted${o.during ? ` ${o.during}` : ''}: a tensor of ${formatBytes(requestedBytes)} does not fit (the heap ` +
      `holds ${formatBytes(heapBytes)} of its 4 GiB). ${o.remedy ?? WEIGHTS_REMEDY}`);
    this.name = 'WasmHeapError';
  }
}

let allocationLimit: number | null = null;

/**
 * Makes every allocation larger than `bytes` fail as one that does not fit (null: only the real heap limits),
 * so tests reach the out-of-memory paths without filling 4 GiB.
 */
export function setWasmAllocationLimit(bytes: number | null): void {
  if (bytes !== null && !(bytes > 0)) throw new Error(`setWasmAllocationLimit: bytes must be positive or null, got ${bytes}`);
  allocationLimit = bytes;
}

const formatBytes = (b: number) => (b >= 1024 ** 3 ? `${(b / 1024 ** 3).toFixed(2)} GiB` : `${(b / 1024 ** 2).toFixed(1)} MiB`);

interface WasmModule {
  _malloc(n: number): number;
  asm?: { malloc?: (n: number) => number };
  HEAPU8: Uint8Array;
  wasmMemory?: WebAssembly.Memory;
  __tgateGuard?: boolean;
}

/** The module's heap as it is now: in the threaded build its `HEAPU8` view can lag a grown memory. */
export function currentHeap(m: { HEAPU8: Uint8Array; wasmMemory?: WebAssembly.Memory }): Uint8Array {
  const buffer = m.wasmMemory?.buffer;
  return buffer && m.HEAPU8.buffer !== buffer ? new Uint8Array(buffer) : m.HEAPU8;
}

/** Makes every tensor allocation of the wasm backend fail with {@link WasmHeapError} instead of returning 0. */
export function guardWasmHeap(): void {
  const m = (tf.findBackend('wasm') as unknown as { wasm?: WasmModule } | null)?.wasm;
  if (!m || m.__tgateGuard) return;
  // The module's own `_malloc` is a stub that replaces itself with the export on first call: wrap the export.
  const malloc = m.asm?.malloc ?? m._malloc.bind(m);
  const heapBytes = () => currentHeap(m).byteLength;
  m._malloc = (n: number) => {
    // A size from 4 GiB up would reach malloc wrapped to 32 bits: a small block, then written past its end.
    if (n > 0xffffffff || (allocationLimit !== null && n > allocationLimit)) throw new WasmHeapError(n, heapBytes());
    const p = malloc(n);
    if (p === 0 && n > 0) throw new WasmHeapError(n, heapBytes());
    return p;
  };
  m.__tgateGuard = true;
}

