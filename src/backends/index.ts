/**
 * What code outside src/backends may use from it, besides the kernel interface (./kernels.ts) that layers
 * call: choosing and setting up a backend, its device limits, and the public knobs and errors. Everything
 * else in this folder is internal to it (test/architecture.test.ts checks both rules).
 */
export {
  initBackend, probeBackends, autoOrder, activeBackend, quietCpuBackend, BACKENDS,
  type BackendName, type BackendChoice, type BackendOptions, type BackendReport,
} from './select.js';
export { installFastCpuKernels } from './cpu-fast/index.js';
export { WASM_HEAP_LIMIT_BYTES, WasmHeapError } from './wasm/heap.js';
export { setWebgpuFusedKernels } from './webgpu/index.js';
export { releaseWebgpuBufferPool } from './webgpu/buffer-pool.js';
export { trackWebgpuBindings, type BindingStats } from './webgpu/bindings.js';
export {
  setBufferLimit, deviceLimits, bufferLimitBytes, attentionQueryChunk, checkGenerationFits, limitStats,
  type DeviceLimits, type SizePlanInput,
} from './limits.js';
