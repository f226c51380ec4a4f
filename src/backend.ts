/**
 * Backend selection. Every backend package is imported lazily, so a missing optional one
 * (tfjs-node-gpu and tfjs-node need libtensorflow, whose install downloads it) only removes that choice.
 */
import * as tf from '@tensorflow/tfjs-core';
import { installFastCpuKernels } from './backend-cpu-fast.js';
import { guardWasmHeap } from './backend-wasm.js';

export type BackendName = 'node-gpu' | 'node' | 'webgpu' | 'wasm' | 'webgl' | 'cpu';
export type BackendChoice = BackendName | 'auto';

export const BACKENDS: BackendName[] = ['node-gpu', 'node', 'webgpu', 'wasm', 'webgl', 'cpu'];

export interface BackendOptions {
  /** Dawn's backend for WebGPU in Node: 'vulkan' (default) or 'opengles' (NVIDIA servers, Mesa). Env: DAWN_BACKEND. */
  dawnBackend?: 'vulkan' | 'opengles' | 'default';
  /**
   * wasm in Node: XNNPACK threads (1 to 8; default every CPU of the machine, up to 8; env TGATE_WASM_THREADS).
   * Read when the wasm backend is first initialised in the process; later calls keep its pool.
   */
  wasmThreads?: number;
  /** Do not print the choice. */
  quiet?: boolean;
}

export interface BackendReport {
  name: BackendName;
  /** The TF.js backend id (`tensorflow` for node/node-gpu). */
  tfBackend: string;
  /** Why this one was chosen, and why earlier candidates were not. */
  reason: string;
  /** Adapter/device details where the backend has them. */
  details?: string;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function importOptional(spec: string): Promise<unknown> {
  // A variable specifier keeps bundlers and tsc from resolving optional packages at build time.
  const s = spec;
  return import(/* webpackIgnore: true */ /* @vite-ignore */ s);
}

let webgpuDetails: string | undefined;

async function setupNodeWebGPU(opts: BackendOptions): Promise<void> {
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return;
  const dawn = (await importOptional('webgpu')) as { create: (flags: string[]) => unknown; globals: object };
  const asked = opts.dawnBackend ?? (process.env.DAWN_BACKEND as BackendOptions['dawnBackend'] | undefined);
  // Vulkan first; containers often lack it, while OpenGL ES over EGL (NVIDIA's or Mesa's) works.
  const tries: NonNullable<BackendOptions['dawnBackend']>[] = asked ? [asked] : ['vulkan', 'opengles'];
  const failures: string[] = [];
  for (const which of tries) {
    const gpu = dawn.create(which === 'default' ? [] : [`backend=${which}`]) as { requestAdapter(o?: object): Promise<unknown> };
    // Dawn's GLES backend only exposes a compatibility-mode adapter; ask for it so the request succeeds.
    const adapterOpts = which === 'opengles' ? { featureLevel: 'compatibility' } : {};
    const probe = (await gpu.requestAdapter(adapterOpts)) as { info?: { vendor?: string; description?: string }; limits?: { maxStorageBufferBindingSize?: number } } | null;
    if (!probe) { failures.push(`no ${which} adapter`); continue; }
    const realRequest = gpu.requestAdapter.bind(gpu);
    gpu.requestAdapter = (o?: object) => realRequest({ ...(o ?? {}), ...adapterOpts });
    Object.assign(globalThis, dawn.globals);
    webgpuDetails = `Dawn ${which}: ${probe.info?.description || probe.info?.vendor || 'adapter'}, maxStorageBufferBindingSize ${probe.limits?.maxStorageBufferBindingSize}`;
    Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu }, configurable: true, writable: true });
    return;
  }
  throw new Error(`Dawn found no WebGPU adapter (${failures.join(', ')}); for OpenGL ES install libegl1 libgles2 (+ libegl-mesa0 on CPU machines) and set EGL_PLATFORM=surfaceless`);
}

/** Registers a backend's TF.js package and sets it; throws with the reason when it cannot. */
async function trySet(name: BackendName, opts: BackendOptions): Promise<{ tfBackend: string; details?: string }> {
  switch (name) {
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      installFastCpuKernels();
      await setOrThrow('cpu');
      quietCpuBackend();
      return { tfBackend: 'cpu' };
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const restore = isNode ? await (await import('./backend-wasm-node.js')).prepareNodeWasm(opts.wasmThreads) : () => {};
      try {
        await setOrThrow('wasm');
      } finally {
        restore();
      }
      guardWasmHeap();
      const threads = wasm.getThreadsCount();
      return { tfBackend: 'wasm', details: `SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'on' : 'off'}, ${threads} thread${threads > 1 ? 's' : ''}; heap limit ~3.9 GiB (wasm32)` };
    }
    case 'webgpu':
      if (isNode) await setupNodeWebGPU(opts);
      else if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) throw new Error('this browser has no navigator.gpu');
      await import('@tensorflow/tfjs-backend-webgpu');
      await setOrThrow('webgpu');
      return { tfBackend: 'webgpu', details: webgpuDetails };
    case 'webgl':
      if (isNode) throw new Error('WebGL needs a browser (no WebGL context in Node)');
      await import('@tensorflow/tfjs-backend-webgl');
      await setOrThrow('webgl');
      return { tfBackend: 'webgl' };
    case 'node-gpu':
    case 'node': {
      if (!isNode) throw new Error('tfjs-node needs Node.js');
      const pkg = name === 'node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
      try {
        await importOptional(pkg);
      } catch (e) {
        const missing = (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
        throw new Error(missing
          ? `${pkg} is not installed (\`npm i ${pkg}\`; its install downloads libtensorflow)`
          : `${pkg} failed to load: ${(e as Error).message.split('\n')[0]}`);
      }
      await setOrThrow('tensorflow');
      return { tfBackend: 'tensorflow' };
    }
  }
}

async function setOrThrow(id: string): Promise<void> {
  if (tf.getBackend() === id) return;
  const ok = await tf.setBackend(id);
  if (!ok) throw new Error(`tf.setBackend('${id}') failed`);
  await tf.ready();
}

/**
 * tfjs-backend-cpu prints an "install our node backend" banner on its first tensor in Node; `tgate info`
 * and the auto fallback already say which backends exist, so the banner is only noise.
 */
export function quietCpuBackend(): void {
  const b = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (b) b.firstUse = false;
}

interface PooledBuffers {
  freeBuffers: Map<string, { size: number; destroy(): void }[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
}

/**
 * Frees the GPU buffers tfjs-backend-webgpu keeps for reuse, and returns how many bytes that was (0 on other
 * backends). It pools every released buffer by exact size and never frees one, so a disposed model's
 * buffers stay allocated, and a model of other sizes loaded after it allocates its own on top: on an 80 GB
 * H100, SDXL run after three SD-1.5 runs in one process took 5× as long as in a fresh one. `Module.dispose()`
 * calls it; call it yourself after releasing other large tensors. Tensors still alive are not touched.
 */
export function releaseWebgpuBufferPool(): number {
  if (tf.getBackend() !== 'webgpu') return 0;
  const backend = tf.backend() as unknown as {
    bufferManager?: PooledBuffers; commandEncoder?: unknown; endComputePassEncoder?(): void; submitQueue?(): void;
  };
  // Buffers of tensors disposed while their work was queued go back to the pool only when the queue is submitted.
  if (backend.commandEncoder && backend.endComputePassEncoder && backend.submitQueue) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  const pool = backend.bufferManager;
  if (!pool?.freeBuffers) return 0;
  let freed = 0;
  for (const buffers of pool.freeBuffers.values()) {
    for (const b of buffers) {
      freed += b.size;
      b.destroy();
    }
    pool.numFreeBuffers -= buffers.length;
    // Emptied, not deleted: the manager stops pooling altogether once its map is empty.
    buffers.length = 0;
  }
  pool.numBytesAllocated -= freed;
  return freed;
}

/** The order `auto` tries, per environment. */
export function autoOrder(): BackendName[] {
  return isNode ? ['node-gpu', 'node', 'webgpu', 'wasm', 'cpu'] : ['webgpu', 'webgl', 'wasm', 'cpu'];
}

/**
 * Initialises a backend. `auto` tries {@link autoOrder} and reports why it settled where it did.
 * Also switches TF.js to production mode-free fp32 settings we rely on (no float16 textures on WebGL).
 */
export async function initBackend(choice: BackendChoice = 'auto', opts: BackendOptions = {}): Promise<BackendReport> {
  const candidates = choice === 'auto' ? autoOrder() : [choice];
  if (choice !== 'auto' && !BACKENDS.includes(choice)) {
    throw new Error(`unknown backend "${choice}"; choose one of auto, ${BACKENDS.join(', ')}`);
  }
  const skipped: string[] = [];
  for (const name of candidates) {
    try {
      const { tfBackend, details } = await trySet(name, opts);
      if (name === 'webgl') tf.env().set('WEBGL_FORCE_F16_TEXTURES', false);
      const reason = choice === 'auto'
        ? `auto: ${skipped.length ? skipped.join('; ') + '; ' : ''}${name} is available`
        : `${name} requested`;
      const report = { name, tfBackend, reason, details };
      if (!opts.quiet) console.error(`[tgate] backend ${name}${details ? ` (${details})` : ''} — ${reason}`);
      return report;
    } catch (e) {
      if (choice !== 'auto') throw new Error(`backend "${name}" is not available: ${(e as Error).message}`);
      skipped.push(`${name} unavailable (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new Error(`no backend could be initialised: ${skipped.join('; ')}`);
}

/** Probes each backend without keeping it; used by `tgate info`. */
export async function probeBackends(opts: BackendOptions = {}): Promise<{ name: BackendName; available: boolean; note: string }[]> {
  const out: { name: BackendName; available: boolean; note: string }[] = [];
  const before = tf.getBackend();
  for (const name of BACKENDS) {
    try {
      const { details } = await trySet(name, opts);
      out.push({ name, available: true, note: details ?? 'ok' });
    } catch (e) {
      out.push({ name, available: false, note: (e as Error).message.split('\n')[0] });
    }
  }
  if (before) await tf.setBackend(before);
  return out;
}
