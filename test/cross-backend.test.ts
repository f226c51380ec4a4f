/**
 * The same seeded generation of the tiny-shapes demo model on cpu, wasm and WebGPU through Dawn (Node;
 * Vulkan, else OpenGL ES, e.g. Mesa with EGL_PLATFORM=surfaceless) ends in the same latents, with and
 * without TGATE. WebGPU is skipped, saying so, only when Dawn finds no adapter.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { relL2, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { BackendName } from '../src/backends/index.js';
import type { TgateOptions } from '../src/attention/tgate.js';
import { runWebgpuChild } from './webgpu-run.js';

const ASSET = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'assets', 'tiny-shapes');
const BOUND = 1e-3;
// 5 steps: the cpu backend is slow under jest. TGATE gates at step 3 so both caches are written and reused.
const CALL = { prompt: 'a small red circle on the left', seed: 1234, numInferenceSteps: 5, guidanceScale: 7.5, height: 64, width: 64 } as const;
const TGATE: TgateOptions = { gateStep: 3, spInterval: 2, fiInterval: 1, warmUp: 1 };
const RUNS = { plain: null, tgate: TGATE } as const;

const latents: Partial<Record<BackendName, Record<keyof typeof RUNS, ArrayLike<number>>>> = {};

async function runOn(name: 'cpu' | 'wasm'): Promise<void> {
  await useBackend(name);
  // Weights belong to the backend that created them: load per backend.
  const pipe = (await loadPipeline(ASSET)) as StableDiffusionPipeline;
  const out = {} as Record<keyof typeof RUNS, Float32Array>;
  try {
    for (const [key, tgate] of Object.entries(RUNS) as [keyof typeof RUNS, TgateOptions | null][]) {
      const t0 = performance.now();
      const r = await pipe.generate({ ...CALL, tgate, outputType: 'latent' });
      out[key] = (await r.latents.data()) as Float32Array;
      r.latents.dispose();
      console.log(`[${name}] ${key}: ${(performance.now() - t0).toFixed(0)} ms for ${CALL.numInferenceSteps} steps`);
    }
  } finally {
    pipe.dispose();
  }
  latents[name] = out;
}

/** WebGPU runs in a child process (test/webgpu-child.ts); false when Dawn has no adapter. */
async function runOnWebgpu(): Promise<boolean> {
  const r = await runWebgpuChild<{ latents: Record<keyof typeof RUNS, number[]>; ms: Record<string, number> }>({ asset: ASSET, call: CALL, runs: RUNS });
  if (r.skip !== undefined) {
    console.warn(`cross-backend: webgpu SKIPPED — ${r.skip}`);
    return false;
  }
  console.log(`[webgpu] ${r.details}: ${Object.entries(r.ms).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')} for ${CALL.numInferenceSteps} steps (incl. shader compiles)`);
  latents.webgpu = r.latents;
  return true;
}

afterAll(async () => {
  await useBackend('cpu');
});

test('cpu, wasm and webgpu give the same latents (rel-L2 ≤ 1e-3)', async () => {
  await runOn('wasm');
  await runOn('cpu');
  const gpu = await runOnWebgpu();
  const ref = latents.wasm!;
  const report: string[] = [];
  for (const name of ['cpu', ...(gpu ? ['webgpu'] : [])] as BackendName[]) {
    for (const key of Object.keys(RUNS) as (keyof typeof RUNS)[]) {
      const e = relL2(latents[name]![key], ref[key]);
      report.push(`${name} vs wasm ${key}: ${e.toExponential(2)}`);
      expect(e).toBeLessThanOrEqual(BOUND);
    }
  }
  if (gpu) {
    for (const key of Object.keys(RUNS) as (keyof typeof RUNS)[]) {
      report.push(`webgpu vs cpu ${key}: ${relL2(latents.webgpu![key], latents.cpu![key]).toExponential(2)}`);
    }
  }
  console.log(`cross-backend rel-L2: ${report.join('; ')}`);
  // TGATE changes the result (it is not a no-op), on every backend alike.
  expect(relL2(ref.tgate, ref.plain)).toBeGreaterThan(10 * BOUND);
}, 300000);
