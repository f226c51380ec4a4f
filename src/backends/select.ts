/**
 * Backend selection. Every backend package is imported lazily, so a missing optional one
 * (tfjs-node-gpu and tfjs-node need libtensorflow, whose install downloads it) only removes that choice.
 * Setting a backend up also installs what this library adds to it: the fast cpu kernels, the wasm heap guard
 * and the kernel sets layers ask for (backends/kernels.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { installFastCpuKernels } from './cpu-fast/index.js';
import { installWasm } from './wasm/index.js';
import { installDawn, type DawnBackend, type DawnModule } from './webgpu/dawn.js';
import { installWebgpu } from './webgpu/index.js';

export type BackendName = 'node-gpu' | 'node' | 'webgpu' | 'wasm' | 'webgl' | 'cpu';
export type BackendChoice = BackendName | 'auto';

export const BACKENDS: BackendName[] = ['node-gpu', 'node', 'webgpu', 'wasm', 'webgl', 'cpu'];

export interface BackendOptions {
  /** Dawn's backend for WebGPU in Node: 'vulkan' (default) or 'opengles' (NVIDIA servers, Mesa). Env: DAWN_BACKEND. */
  dawnBackend?: DawnBackend;
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
      const restore = isNode ? await (await import('./wasm/node.js')).prepareNodeWasm(opts.wasmThreads) : () => {};
      try {
        await setOrThrow('wasm');
      } finally {
        restore();
      }
      installWasm();
      const threads = wasm.getThreadsCount();
      return { tfBackend: 'wasm', details: `SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'on' : 'off'}, ${threads} thread${threads > 1 ? 's' : ''}; heap limit ~3.9 GiB (wasm32)` };
    }
    case 'webgpu':
      if (isNode) webgpuDetails = (await installDawn(() => importOptional('webgpu') as Promise<DawnModule>, opts.dawnBackend)) ?? webgpuDetails;
      else if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) throw new Error('this browser has no navigator.gpu');
      await import('@tensorflow/tfjs-backend-webgpu');
      await setOrThrow('webgpu');
      installWebgpu();
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

/** The TF.js id of the active backend (`tensorflow` for node/node-gpu), for reports and logs. */
export function activeBackend(): string {
  return tf.getBackend();
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
  // A bad thread count is the caller's mistake, not a backend that is missing: `auto` must not skip past it.
  if (isNode && candidates.includes('wasm')) (await import('./wasm/node.js')).wasmThreadsWanted(opts.wasmThreads);
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
