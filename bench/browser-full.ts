/**
 * Full-size SD-1.5 in a real browser. Writes the whole SD-1.5 pipeline (CLIP ViT-L/14 text encoder, UNet,
 * VAE, PNDM scheduler; seeded random weights, no tokenizer) as float16 TF.js shards with `tgate convert`'s
 * writer, runs it in Node on wasm (the reference), serves it on 127.0.0.1 (cross-origin isolated, so wasm
 * threads are on) and runs the same thing in headless Chromium on wasm and on WebGPU (SwiftShader here):
 * seeded token ids through the text encoder, `--steps` denoising steps at `--size`², the VAE decode. Compares
 * every output with Node's by relative L2 (the final latents must agree within 1e-3) and records download,
 * load and step seconds and the page's memory. Heavy (1.07 G parameters; ~2.1 GB of shards on disk, ~5 GB
 * of memory per run): not part of `npm test`.
 *
 *   npx tsx bench/browser-full.ts [--backends wasm,wasm:2,webgpu] [--size 128] [--steps 2] [--seed 0] [--threads N]
 *     [--webgpu-minutes 60] [--dir bench/.cache/sd15-f16] [--keep] [--reuse-node] [--out bench/results/browser-full-sd15-128.json]
 *
 * `--threads`: Node's wasm threads (default every CPU, up to 8). The shards are written to --dir (reused by a
 * later run with the same seed) and deleted at the end unless --keep; `--reuse-node` takes the Node reference
 * from the last run's `<dir>.node-reference.json` (same seed and settings) instead of running it again.
 * Chromium: /usr/bin/chromium or CHROMIUM_PATH.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { BrowserContext, Page } from 'playwright-core';
import { initBackend } from '../src/backends/index.js';
import { convertPipeline } from '../src/convert/convert.js';
import { relL2 } from '../src/eval/rel-l2.js';
import { CLIP_L, SD15_SCHEDULER, fixtureConfig } from './full-configs.js';
import { SeededWeightSource } from './seeded-weights.js';
import { fullRun, type FullRunResult, type FullRunSettings } from './browser-full-run.js';
import type { FullPage } from './browser-full-page.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const arg = (name: string, dflt: string): string => (argv.includes(name) ? argv[argv.indexOf(name) + 1]! : dflt);
/** Page runs: `wasm` (XNNPACK's pool as the browser gets it), `wasm:N` (N threads forced), `webgpu`. */
const runs = arg('--backends', 'wasm,wasm:2,webgpu').split(',');
for (const r of runs) if (!/^(wasm(:[1-8])?|webgpu)$/.test(r)) throw new Error(`--backends takes wasm, wasm:N (N threads, 1–8) and webgpu, got ${r}`);
const seed = Number(arg('--seed', '0'));
const threads = Number(arg('--threads', String(Math.min(8, os.cpus().length))));
const webgpuMinutes = Number(arg('--webgpu-minutes', '60'));
const dir = path.resolve(arg('--dir', path.join(ROOT, 'bench/.cache/sd15-f16')));
const outFile = path.resolve(arg('--out', path.join(ROOT, 'bench/results/browser-full-sd15-128.json')));
const keep = argv.includes('--keep');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The bound on the final latents: both sides read the same float16 values, so only arithmetic order differs. */
const LATENT_BOUND = 1e-3;

const settings: Omit<FullRunSettings, 'offload' | 'weightDtype'> = {
  size: Number(arg('--size', '128')), steps: Number(arg('--steps', '2')), guidance: 7.5, seed, promptTokens: 12,
};
/** wasm: the heap (~3.9 GiB) cannot hold the pipeline's 3.97 GiB of float32 weights, so they stay in JS memory. */
const WASM: Pick<FullRunSettings, 'offload' | 'weightDtype'> = { offload: true, weightDtype: 'float32' };
/** WebGPU: weights stay float16 on the device (2.0 GiB), read by our kernels with f32 arithmetic. */
const WEBGPU: Pick<FullRunSettings, 'offload' | 'weightDtype'> = { offload: false, weightDtype: 'float16' };

const log = (s: string): void => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
const GB = (b: number): string => `${(b / 1e9).toFixed(2)} GB`;

// ---------------------------------------------------------------------------------------------------------
// The pipeline folder: configs of the real checkpoints, seeded weights, written as float16 shards.

const STAMP = 'bench-browser-full.json';
const COMPONENT_SEEDS: Record<string, number> = { text_encoder: 1, unet: 2, vae: 3 };

function folderFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else out.push(r);
    }
  };
  walk('');
  return out.sort();
}

async function prepareFolder(): Promise<Record<string, unknown>> {
  const stamp = path.join(dir, STAMP);
  if (existsSync(stamp) && (JSON.parse(readFileSync(stamp, 'utf8')) as { seed?: number }).seed === seed) {
    log(`reusing ${dir}`);
    return { reused: true, ...(JSON.parse(readFileSync(stamp, 'utf8')) as Record<string, unknown>) };
  }
  // A diffusers folder of configs alone: the weights come from SeededWeightSource, not from files.
  const skeleton = await mkdtemp(path.join(os.tmpdir(), 'tgate-sd15-skeleton-'));
  const write = async (rel: string, json: unknown): Promise<void> => {
    await mkdir(path.dirname(path.join(skeleton, rel)), { recursive: true });
    await writeFile(path.join(skeleton, rel), JSON.stringify(json, null, 1));
  };
  await write('model_index.json', {
    _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.30.3', requires_safety_checker: false,
    unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], text_encoder: ['transformers', 'CLIPTextModel'],
    scheduler: ['diffusers', 'PNDMScheduler'], tokenizer: [null, null], safety_checker: [null, null], feature_extractor: [null, null],
  });
  await write('unet/config.json', fixtureConfig('sd15_unet.json'));
  await write('vae/config.json', fixtureConfig('sd_vae.json'));
  await write('text_encoder/config.json', CLIP_L);
  await write('scheduler/scheduler_config.json', SD15_SCHEDULER);
  const t0 = performance.now();
  let lastLog = 0;
  try {
    const report = await convertPipeline(skeleton, dir, {
      quantize: 'float16', force: true,
      weightSource: (name, model) => new SeededWeightSource(model, seed * 10 + (COMPONENT_SEEDS[name] ?? 9), name),
    }, (p) => {
      if (performance.now() - lastLog < 20000 && p.phase === 'tensor') return;
      lastLog = performance.now();
      log(`convert: ${p.component} ${GB(p.bytesDone)} of ${GB(p.bytesTotal)} (float32 bytes)`);
    });
    const info = {
      seed, convertSeconds: (performance.now() - t0) / 1000,
      components: report.components.map((c) => ({ name: c.name, className: c.className, parameters: c.parameters, storedBytes: c.storedBytes, shards: c.shards })),
    };
    writeFileSync(stamp, JSON.stringify(info, null, 1));
    return { reused: false, ...info };
  } finally {
    await rm(skeleton, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Serving and the browser.

/** Cross-origin isolation: SharedArrayBuffer, hence wasm threads, and measureUserAgentSpecificMemory. */
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm' };

/** Serves /page/ and /model/ read-only on 127.0.0.1, counting the bytes of /model/ bodies. */
async function serve(pageDir: string): Promise<{ server: http.Server; base: string; modelBytes: () => number }> {
  let modelBytes = 0;
  const roots: Record<string, string> = { page: pageDir, model: dir };
  const server = http.createServer((req, res) => {
    const parts = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).split('/').filter(Boolean);
    const root = roots[parts[0] ?? ''];
    const file = root ? path.join(root, ...parts.slice(1)) : '';
    if (req.method !== 'GET' || !root || !file.startsWith(root + path.sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, ISOLATION).end();
      return;
    }
    const size = statSync(file).size;
    res.writeHead(200, { ...ISOLATION, 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'content-length': size });
    if (parts[0] === 'model') modelBytes += size;
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, modelBytes: () => modelBytes };
}

/** The page: bench/browser-full-page.ts bundled, the wasm binaries beside it. */
async function buildPage(): Promise<string> {
  const out = path.join(ROOT, 'bench/.cache/page');
  await rm(out, { recursive: true, force: true });
  await build({
    entryPoints: [path.join(ROOT, 'bench/browser-full-page.ts')], outdir: out, bundle: true, splitting: true, format: 'esm',
    platform: 'browser', target: 'es2022', external: ['node:*'], logLevel: 'warning',
  });
  const wasmDir = path.join(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const f of await readdir(wasmDir)) if (f.endsWith('.wasm')) await copyFile(path.join(wasmDir, f), path.join(out, f));
  await writeFile(path.join(out, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="./browser-full-page.js"></script>');
  return out;
}

async function launch(profile: string): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-quic',
      '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
      // measureUserAgentSpecificMemory answers at once instead of at the next garbage collection (up to 20 s).
      '--enable-blink-features=ForceEagerMeasureMemory',
    ],
  });
}

/** Peak and latest resident memory of this browser's renderer and GPU processes (by their profile folder), from /proc. */
function memorySampler(profile: string): { stop(): Record<string, { peakRssBytes: number; maxSampledRssBytes: number }> } {
  const seen: Record<string, { peakRssBytes: number; maxSampledRssBytes: number }> = {};
  const sample = (): void => {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let cmd: string;
      let status: string;
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (!cmd.includes(`--user-data-dir=${profile}`)) continue;
        status = readFileSync(`/proc/${pid}/status`, 'utf8');
      } catch { continue; }
      const type = /--type=([\w-]+)/.exec(cmd)?.[1] ?? 'browser';
      const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
      const s = (seen[type] ??= { peakRssBytes: 0, maxSampledRssBytes: 0 });
      s.peakRssBytes = Math.max(s.peakRssBytes, kb('VmHWM'));
      s.maxSampledRssBytes = Math.max(s.maxSampledRssBytes, kb('VmRSS'));
    }
  };
  const timer = setInterval(sample, 1000);
  return { stop: () => { sample(); clearInterval(timer); return seen; } };
}

/** Relative L2 of everything the run produced, against Node's. */
function compare(r: FullRunResult, ref: FullRunResult): Record<string, number | number[]> {
  return {
    latents: relL2(r.latents, ref.latents),
    modelOutputs: r.modelOutputs.map((m, i) => relL2(m, ref.modelOutputs[i]!)),
    embeddings: relL2(r.embeddings, ref.embeddings),
    image: relL2(r.rgb, ref.rgb),
  };
}

/** The figures of a run without the compared arrays. */
function figures(r: FullRunResult): Record<string, unknown> {
  const { embeddings: _e, modelOutputs: _m, latents: _l, rgb: _r, ...rest } = r;
  return rest;
}

async function browserRun(run: string, base: string, modelBytes: () => number, ref: FullRunResult): Promise<Record<string, unknown>> {
  const backend = run.startsWith('wasm') ? 'wasm' as const : 'webgpu' as const;
  const pageThreads = run.startsWith('wasm:') ? Number(run.slice(5)) : null;
  const profile = await mkdtemp(path.join(os.tmpdir(), 'tgate-chromium-full-'));
  const context = await launch(profile);
  const sampler = memorySampler(profile);
  const lines: string[] = [];
  const t0 = performance.now();
  const out: Record<string, unknown> = { backend, pageThreads, status: 'running', progress: lines };
  const attempt = async (): Promise<void> => {
    const page: Page = await context.newPage();
    page.on('console', (m) => {
      if (!m.text().startsWith('[tgate-full]')) return;
      lines.push(`${((performance.now() - t0) / 1000).toFixed(0)} s ${m.text().slice(13)}`);
      log(`${run} page: ${m.text().slice(13)}`);
    });
    page.on('pageerror', (e) => lines.push(`page error: ${e.message}`));
    await page.goto(`${base}/page/index.html`);
    await page.waitForFunction(() => 'tgateFull' in window, null, { timeout: 60000 });
    const call = <K extends keyof FullPage>(name: K, ...args: Parameters<FullPage[K]>): Promise<Awaited<ReturnType<FullPage[K]>>> =>
      page.evaluate(([n, a]) => ((window as unknown as { tgateFull: Record<string, (...x: unknown[]) => unknown> }).tgateFull[n]!(...a)), [name, args] as const) as never;
    out.env = await call('env');
    if (backend === 'webgpu') {
      out.adapter = await call('adapter');
      if (!out.adapter) { out.status = 'skipped: Chromium offers no WebGPU adapter here'; return; }
    }
    const served0 = modelBytes();
    out.download = await call('download', `${base}/model/`, folderFiles(dir));
    const served1 = modelBytes();
    const limitMs = backend === 'webgpu' ? webgpuMinutes * 60000 : 30 * 60000;
    let timer: NodeJS.Timeout | undefined;
    const running = call('run', backend, `${base}/model/`, { ...settings, ...(backend === 'wasm' ? WASM : WEBGPU) }, pageThreads);
    const r = await Promise.race([running, new Promise<'timeout'>((res) => { timer = setTimeout(() => res('timeout'), limitMs); })]);
    clearTimeout(timer);
    if (r === 'timeout') { out.status = `timeout: no result after ${limitMs / 60000} min`; return; }
    Object.assign(out, {
      status: 'ok', backendDetails: r.backendDetails, limits: r.limits, bindings: r.bindings, uaMemory: r.uaMemory, servedBytes: { download: served1 - served0, load: modelBytes() - served1 },
      ...figures(r), relL2VsNode: compare(r, ref),
    });
  };
  try {
    await attempt();
  } catch (e) {
    out.status = `error: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    out.processMemory = sampler.stop();
    out.wallSeconds = (performance.now() - t0) / 1000;
    await context.close().catch(() => undefined);
    await rm(profile, { recursive: true, force: true });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------

function chromiumVersion(): string {
  try {
    return execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch (e) {
    return `unknown (${(e as Error).message.split('\n')[0]})`;
  }
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  const result: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: {
      cpu: cpus[0]?.model?.trim(), cores: cpus.length, ramGiB: +(os.totalmem() / 2 ** 30).toFixed(1), kernel: `${os.platform()} ${os.release()}`,
      node: process.versions.node, chromium: chromiumVersion(), loadAverageAtStart: os.loadavg(),
    },
    settings: { ...settings, wasm: WASM, webgpu: WEBGPU, wasmThreads: threads, latentBound: LATENT_BOUND },
  };
  const save = (): void => writeFileSync(outFile, `${JSON.stringify(result, null, 1)}\n`);
  log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${result.machine && (result.machine as { chromium: string }).chromium}`);

  result.folder = await prepareFolder();
  const files = folderFiles(dir);
  result.folder = { ...(result.folder as object), files: files.length, bytes: files.reduce((a, f) => a + statSync(path.join(dir, f)).size, 0) };
  log(`folder: ${files.length} files, ${GB((result.folder as { bytes: number }).bytes)}`);

  // The reference: the same folder, settings and code in Node on wasm.
  const refFile = `${dir}.node-reference.json`;
  const key = JSON.stringify({ seed, settings, threads });
  type NodeReference = { key: string; node: Record<string, unknown>; ref: FullRunResult };
  let node: NodeReference | null = null;
  if (argv.includes('--reuse-node') && existsSync(refFile)) {
    const saved = JSON.parse(readFileSync(refFile, 'utf8')) as NodeReference;
    if (saved.key === key) node = { ...saved, node: { ...saved.node, reusedFromEarlierRun: true } };
    log(node ? `node: reference taken from ${refFile}` : `node: ${refFile} has other settings; running the reference`);
  }
  if (!node) {
    const report = await initBackend('wasm', { quiet: true, wasmThreads: threads });
    const ref = await fullRun(dir, { ...settings, ...WASM }, { onProgress: (l) => log(`node: ${l}`) });
    node = { key, ref, node: { backend: report.name, backendDetails: report.details, ...figures(ref), maxRssBytes: process.resourceUsage().maxRSS * 1024 } };
    writeFileSync(refFile, JSON.stringify(node));
  }
  const ref = node.ref;
  result.node = node.node;
  save();

  const { server, base, modelBytes } = await serve(await buildPage());
  const failures: string[] = [];
  try {
    const browser: Record<string, unknown> = {};
    result.browser = browser;
    for (const b of runs) {
      log(`chromium ${b}: load average ${os.loadavg()[0]!.toFixed(2)}`);
      const r = await browserRun(b, base, modelBytes, ref);
      browser[b] = { loadAverageAtStart: os.loadavg(), ...r };
      save();
      const rel = (r.relL2VsNode as { latents?: number } | undefined)?.latents;
      log(`chromium ${b}: ${String(r.status)}${rel === undefined ? '' : `; latents rel-L2 vs Node ${rel.toExponential(2)}`}`);
      if (rel !== undefined && !(rel <= LATENT_BOUND)) failures.push(`${b}: latents rel-L2 ${rel} > ${LATENT_BOUND}`);
      if (b.startsWith('wasm') && r.status !== 'ok') failures.push(`${b}: ${String(r.status)}`);
    }
  } finally {
    server.close();
    save();
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
  log(`results → ${path.relative(ROOT, outFile)}`);
  if (failures.length) throw new Error(failures.join('; '));
}

main().then(() => process.exit(0), (e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
