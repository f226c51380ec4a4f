/**
 * The page of bench/browser-full.ts (bundled by it with esbuild): `window.tgateFull` downloads the pipeline
 * folder's files (to time the transfer alone) and runs bench/browser-full-run.ts on wasm or WebGPU, measuring
 * the page's memory with `performance.measureUserAgentSpecificMemory` where the page is cross-origin isolated.
 */
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { deviceLimits, initBackend, trackWebgpuBindings } from '../src/backends/index.js';
import { fullRun, type FullRunSettings } from './browser-full-run.js';

// The .wasm files are copied next to the bundle.
setWasmPaths(new URL('./', import.meta.url).href);

type UaMemory = { bytes: number; breakdown: { bytes: number; types: string[] }[] };

/** The page's memory as the browser attributes it (JS heaps, ArrayBuffers, wasm memory), or why not. */
async function uaMemory(): Promise<{ bytes: number; byType: Record<string, number> } | string> {
  const p = performance as unknown as { measureUserAgentSpecificMemory?: () => Promise<UaMemory> };
  if (!crossOriginIsolated) return 'not cross-origin isolated';
  if (!p.measureUserAgentSpecificMemory) return 'performance.measureUserAgentSpecificMemory is missing';
  const m = await p.measureUserAgentSpecificMemory();
  const byType: Record<string, number> = {};
  for (const b of m.breakdown) {
    const key = b.types.join('+') || 'other';
    byType[key] = (byType[key] ?? 0) + b.bytes;
  }
  return { bytes: m.bytes, byType };
}

const full = {
  env: () => ({ crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency, userAgent: navigator.userAgent }),

  adapter: async (): Promise<string | null> => {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } }).gpu;
    const a = await gpu?.requestAdapter();
    if (!a) return null;
    const i = a.info ?? {};
    return [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' / ') || 'adapter (no info)';
  },

  /** Fetches `files` (relative to `base`) one after another, reading and discarding each body: bytes and seconds. */
  download: async (base: string, files: string[]): Promise<{ bytes: number; seconds: number }> => {
    const t0 = performance.now();
    let bytes = 0;
    for (const f of files) {
      const res = await fetch(new URL(f, base));
      if (!res.ok || !res.body) throw new Error(`GET ${f}: HTTP ${res.status}`);
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.length;
      }
    }
    return { bytes, seconds: (performance.now() - t0) / 1000 };
  },

  /**
   * Sets up `backend` and runs the pipeline at `url`. wasm: `threads` null leaves XNNPACK's pool as the
   * package makes it (half of navigator.hardwareConcurrency: one thread on 2 cores); a number answers the
   * core count so that the pool gets exactly that many, as src/backends/wasm/node.ts does in Node.
   */
  run: async (backend: 'wasm' | 'webgpu', url: string, settings: FullRunSettings, threads: number | null) => {
    if (backend === 'wasm' && threads) {
      Object.defineProperty(navigator, 'hardwareConcurrency', { configurable: true, get: () => 2 * threads });
      setThreadsCount(threads);
    }
    const report = await initBackend(backend, { quiet: true });
    const memory: Record<string, unknown> = {};
    // WebGPU: every buffer binding of the run counted against browsers' default 128 MiB.
    if (backend === 'webgpu') trackWebgpuBindings(true);
    const r = await fullRun(url, settings, {
      onPhase: async (phase) => { memory[phase] = await uaMemory(); },
      onProgress: (line) => console.log(`[tgate-full] ${line}`),
    });
    const b = backend === 'webgpu' ? trackWebgpuBindings(false) : null;
    const bindings = b && { bindGroups: b.bindGroups, largestBytes: b.largest, largestProgram: b.largestProgram, over128MiB: b.over.length };
    return { backend: report.name, backendDetails: report.details ?? '', limits: deviceLimits(), bindings, uaMemory: memory, ...r };
  },
};

export type FullPage = typeof full;
(window as unknown as { tgateFull: FullPage }).tgateFull = full;
