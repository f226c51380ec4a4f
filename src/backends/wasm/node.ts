/**
 * tfjs-backend-wasm in Node: its files from disk and XNNPACK's thread pool.
 *
 * The package's threaded build runs Emscripten pthreads on worker_threads, but as shipped it cannot start in
 * Node: each pthread worker is created from a `blob:` URL (Node's Worker takes none) and then re-evaluates
 * the file that created it, which in Node is the CommonJS bundle, not the Emscripten glue. So, during
 * initialisation only, `Worker` is replaced by one that runs the package's own worker script and points it
 * at the package's own glue. TF.js also sizes the pool as half the logical cores (it assumes two
 * hyperthreads per core) and caps it there; the core count it reads is answered so that the pool gets
 * exactly the threads asked for.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import path from 'node:path';
import os from 'node:os';
import { readFile } from 'node:fs/promises';
import { Worker as NodeWorker } from 'node:worker_threads';

/** XNNPACK's pool has at most 8 threads (the workers the package pre-creates). */
const MAX_THREADS = 8;

/** The thread count asked for: the option, else TGATE_WASM_THREADS, else every CPU of the machine (max 8). */
export function wasmThreadsWanted(asked?: number): number {
  const env = process.env.TGATE_WASM_THREADS;
  const n = asked ?? (env !== undefined && env !== '' ? Number(env) : Math.min(os.availableParallelism?.() ?? os.cpus().length, MAX_THREADS));
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new RangeError(asked !== undefined
      ? `wasmThreads must be an integer from 1 to ${MAX_THREADS}, got ${asked}`
      : `TGATE_WASM_THREADS=${env} is invalid: the wasm thread count must be an integer from 1 to ${MAX_THREADS}`);
  }
  return n;
}

/**
 * Prepares tfjs-backend-wasm's first initialisation in the process, with {@link wasmThreadsWanted}`(asked)`
 * XNNPACK threads (1: the single-threaded SIMD build); once it is initialised, its pool stays as it is.
 * Returns a function to call once `tf.setBackend('wasm')` has settled.
 */
export async function prepareNodeWasm(asked?: number): Promise<() => void> {
  if (tf.engine().registry.wasm) return () => {};
  const threads = wasmThreadsWanted(asked);
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const req = createRequire(import.meta.url);
  const dir = path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  wasm.setWasmPaths({
    'tfjs-backend-wasm.wasm': path.join(dir, 'dist', 'tfjs-backend-wasm.wasm'),
    'tfjs-backend-wasm-simd.wasm': path.join(dir, 'dist', 'tfjs-backend-wasm-simd.wasm'),
    'tfjs-backend-wasm-threaded-simd.wasm': path.join(dir, 'dist', 'tfjs-backend-wasm-threaded-simd.wasm'),
  }, true);
  serveLocalFilesToFetch();
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', threads > 1);
  if (threads === 1) return () => {};
  wasm.setThreadsCount(threads);
  const glue = path.join(dir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = req(path.join(dir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  // The script holds "\n" escapes that its template literal turned into newlines inside string literals.
  const script = wasmWorkerContents.replace(/\n/g, '\\n');
  class PthreadWorker extends NodeWorker {
    constructor() {
      super(script, { eval: true });
      this.unref();
    }
    // The main thread waits on its pool synchronously, so a pool thread must never keep the process alive.
    override ref(): void {}
    override postMessage(msg: unknown, transfer?: Parameters<NodeWorker['postMessage']>[1]): void {
      const m = msg as { cmd?: string };
      super.postMessage(m?.cmd === 'load' ? { ...m, urlOrBlob: glue } : msg, transfer);
    }
  }
  const g = globalThis as Record<string, unknown>;
  const workerBefore = Object.getOwnPropertyDescriptor(g, 'Worker');
  Object.defineProperty(g, 'Worker', { configurable: true, get: () => PthreadWorker, set: () => {} });
  const instantiate = WebAssembly.instantiate;
  (WebAssembly as { instantiate: unknown }).instantiate = (source: unknown, imports?: { env?: Record<string, unknown> }) => {
    if (imports?.env && 'emscripten_num_logical_cores' in imports.env) imports.env.emscripten_num_logical_cores = () => 2 * threads;
    return (instantiate as (s: unknown, i: unknown) => unknown)(source, imports);
  };
  return () => {
    (WebAssembly as { instantiate: unknown }).instantiate = instantiate;
    if (workerBefore) Object.defineProperty(g, 'Worker', workerBefore);
    else delete g.Worker;
  };
}

/**
 * Node's global fetch rejects file paths, and tfjs-backend-wasm fetches its .wasm with the platform's
 * fetch: answer absolute local paths from the file system, pass everything else through.
 */
function serveLocalFilesToFetch(): void {
  const platform = tf.env().platform as unknown as { fetch: (p: string, init?: unknown) => Promise<Response>; __tgateLocal?: boolean };
  if (platform.__tgateLocal) return;
  const original = platform.fetch.bind(platform);
  platform.fetch = async (p: string, init?: unknown) => {
    if (typeof p === 'string' && p.startsWith('/')) {
      const body = await readFile(p);
      return new Response(body, { headers: { 'content-type': p.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream' } });
    }
    return original(p, init);
  };
  platform.__tgateLocal = true;
}
