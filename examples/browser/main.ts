/**
 * Browser demo: the tiny-shapes pipeline converted by `tgate convert`, fetched from the same origin, run on
 * WebGPU, WebGL or wasm, with and without TGATE. Bundled from the project's sources by build.mjs.
 *
 * Query parameters: `?model=<url>` (default: the repo's assets/tiny-shapes-tfjs, seen from
 * examples/browser/dist/), `?backend=webgpu|webgl|wasm`.
 * `window.tgateDemo` exposes the same operations to scripts (the browser test drives it).
 */
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { activeBackend, checkGenerationFits, deviceLimits, initBackend, type BackendName } from '../../src/backends/index.js';
import { loadPipeline, type Pipeline } from '../../src/pipelines/load.js';
import { StableDiffusionPipeline } from '../../src/pipelines/stable-diffusion.js';
import type { TgateOptions } from '../../src/attention/tgate.js';

type DemoBackend = 'webgpu' | 'webgl' | 'wasm';

export interface DemoSettings {
  prompt: string;
  steps: number;
  guidance: number;
  seed: number;
  size: number;
  /** null: without TGATE. */
  tgate: TgateOptions | null;
}

export interface DemoResult {
  backend: string;
  width: number;
  height: number;
  /** RGB, row-major. */
  rgb: number[];
  ms: number;
}

const params = new URLSearchParams(location.search);
const modelUrl = new URL(params.get('model') ?? '../../../assets/tiny-shapes-tfjs/', location.href).href;
// The .wasm files are copied next to the bundle (build.mjs); threaded SIMD needs cross-origin isolation.
setWasmPaths(new URL('./', import.meta.url).href);

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const num = (id: string): number => Number($<HTMLInputElement>(id).value);

let current: { backend: DemoBackend; pipe: StableDiffusionPipeline } | null = null;
let busy = false;

function status(msg: string, error = false): void {
  const el = $('status');
  el.textContent = msg;
  el.classList.toggle('error', error);
}

/** The adapter's size limits in words, for the page. */
function describeLimits(): string {
  const l = deviceLimits();
  if (l.backend === 'webgpu') return `maxStorageBufferBindingSize ${mib(l.maxStorageBufferBindingSize)}, maxBufferSize ${mib(l.maxBufferSize)}`;
  if (l.backend === 'webgl') return `MAX_TEXTURE_SIZE ${l.maxTextureSize}`;
  return 'no per-buffer limit (wasm heap ≤ 4 GiB)';
}
const mib = (b?: number): string => (b ? `${(b / 2 ** 20).toFixed(0)} MiB` : '?');

/** Switches backend (weights belong to the backend that made them, so the pipeline is reloaded). */
async function ensurePipeline(backend: DemoBackend): Promise<StableDiffusionPipeline> {
  if (current?.backend === backend) return current.pipe;
  current?.pipe.dispose();
  current = null;
  status(`starting ${backend}…`);
  await initBackend(backend as BackendName, { quiet: true });
  $('limits').textContent = describeLimits();
  const pipe: Pipeline = await loadPipeline(modelUrl, {
    onProgress: (name, i, n) => status(`loading ${name} (${i + 1}/${n}) on ${backend}…`),
  });
  if (!(pipe instanceof StableDiffusionPipeline)) {
    pipe.dispose();
    throw new Error(`${modelUrl} is not a Stable Diffusion pipeline; this demo runs the tiny-shapes model`);
  }
  current = { backend, pipe };
  return pipe;
}

/** Refuses, with the reason, sizes whose unsplittable tensors would not fit this device. */
function checkSize(pipe: StableDiffusionPipeline, s: DemoSettings): void {
  const vs = pipe.vaeScaleFactor;
  if (s.size % (vs * 2 ** (pipe.unet.config.blockOutChannels.length - 1)) !== 0) {
    throw new Error(`size ${s.size} must be a multiple of ${vs * 2 ** (pipe.unet.config.blockOutChannels.length - 1)}`);
  }
  const problems = checkGenerationFits({
    height: s.size, width: s.size, vaeScale: vs,
    unetChannels: pipe.unet.config.blockOutChannels, vaeChannels: pipe.vae.config.blockOutChannels,
    heads: Math.max(...pipe.unet.config.numAttentionHeads), batch: s.guidance > 1 ? 2 : 1,
  });
  if (problems.length) throw new Error(`this ${activeBackend()} device cannot run that size:\n${problems.join('\n')}`);
}

/** One generation, shown in the column for its TGATE setting. */
async function generate(backend: DemoBackend, s: DemoSettings): Promise<DemoResult> {
  $<HTMLSelectElement>('backend').value = backend;
  const pipe = await ensurePipeline(backend);
  checkSize(pipe, s);
  const progress = $<HTMLProgressElement>('progress');
  progress.value = 0;
  const t0 = performance.now();
  const { latents, images } = await pipe.generate({
    prompt: s.prompt, numInferenceSteps: s.steps, guidanceScale: s.guidance, seed: s.seed,
    height: s.size, width: s.size, tgate: s.tgate,
    onStep: async (info) => {
      progress.value = (info.step + 1) / info.numSteps;
      status(`${s.tgate ? 'with' : 'without'} TGATE: step ${info.step + 1}/${info.numSteps} on ${backend}`);
      // Lets the page repaint the progress bar between steps.
      await new Promise((r) => setTimeout(r, 0));
    },
  });
  const ms = performance.now() - t0;
  latents.dispose();
  const img = images[0]!;
  const which = s.tgate ? 'tgate' : 'plain';
  draw($<HTMLCanvasElement>(`canvas-${which}`), img);
  $(`time-${which}`).textContent = `${(ms / 1000).toFixed(2)} s on ${activeBackend()}`;
  status(`done in ${(ms / 1000).toFixed(2)} s`);
  return { backend: activeBackend(), width: img.width, height: img.height, rgb: Array.from(img.data), ms };
}

function draw(canvas: HTMLCanvasElement, img: { width: number; height: number; data: Uint8Array }): void {
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext('2d')!;
  const rgba = new ImageData(img.width, img.height);
  for (let i = 0; i < img.width * img.height; i++) {
    rgba.data[4 * i] = img.data[3 * i]!;
    rgba.data[4 * i + 1] = img.data[3 * i + 1]!;
    rgba.data[4 * i + 2] = img.data[3 * i + 2]!;
    rgba.data[4 * i + 3] = 255;
  }
  ctx.putImageData(rgba, 0, 0);
}

function readSettings(withTgate: boolean): DemoSettings {
  return {
    prompt: $<HTMLInputElement>('prompt').value,
    steps: num('steps'), guidance: num('guidance'), seed: num('seed'), size: num('size'),
    tgate: withTgate
      ? { gateStep: num('gateStep'), spInterval: num('spInterval'), fiInterval: num('fiInterval'), warmUp: num('warmUp') }
      : null,
  };
}

async function guarded(fn: () => Promise<void>): Promise<void> {
  if (busy) return;
  busy = true;
  document.querySelectorAll('button').forEach((b) => (b.disabled = true));
  try {
    await fn();
  } catch (e) {
    status((e as Error).message, true);
    console.error(e);
  } finally {
    busy = false;
    document.querySelectorAll('button').forEach((b) => (b.disabled = false));
  }
}

const backendChoice = (): DemoBackend => $<HTMLSelectElement>('backend').value as DemoBackend;

$('generate').addEventListener('click', () => guarded(async () => {
  await generate(backendChoice(), readSettings($<HTMLInputElement>('tgate').checked));
}));

$('compare').addEventListener('click', () => guarded(async () => {
  const plain = await generate(backendChoice(), readSettings(false));
  const gated = await generate(backendChoice(), readSettings(true));
  status(`TGATE: ${(gated.ms / 1000).toFixed(2)} s vs ${(plain.ms / 1000).toFixed(2)} s without (${(plain.ms / gated.ms).toFixed(2)}× faster)`);
}));

const initial = params.get('backend');
if (initial) $<HTMLSelectElement>('backend').value = initial;
status(`model: ${modelUrl}`);

/** For scripts and tests: the page's operations without the form. */
const api = {
  modelUrl,
  generate,
  limits: () => ({ ...deviceLimits(), text: describeLimits() }),
  hasWebGPU: async () => !!(await (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu?.requestAdapter()),
  /** Runs a form setting through the same size check as the buttons; resolves to the refusal or null. */
  checkSize: async (backend: DemoBackend, s: DemoSettings) => {
    try { checkSize(await ensurePipeline(backend), s); return null; } catch (e) { return (e as Error).message; }
  },
};
(window as unknown as { tgateDemo: typeof api }).tgateDemo = api;
