/**
 * Our own WebGPU kernels in headless Chromium (SwiftShader, the CPU): the fused attention equals the plain
 * attention on the cpu backend within 1e-5 on the models' shapes and masks without any split; the float16
 * kernels equal the float32 ops; float16 weights reproduce the float32 path on the converted tiny-shapes
 * pipeline with half the weight bytes, also when loaded from a `--quantize float16` folder. The checks run in
 * a page bundled from test/browser-checks.ts. Skipped only without Chromium or, saying so, without a WebGPU
 * adapter. SwiftShader is slow: time limits are generous.
 */
import type http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { bundlePage, haveChromium, launchChromium, serve, CHROMIUM } from './support/browser.js';
import { convertPipeline } from '../src/convert/convert.js';
import { relL2 } from '../src/eval/rel-l2.js';
import { ATTENTION_CASES, type AttentionReport } from './webgpu-attention-check.js';
import type { BrowserChecks, GenerateCall } from './browser-checks.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'test-output', 'browser-webgpu');
const CALL: GenerateCall = { prompt: 'a small red square on the right', seed: 7, steps: 2, size: 32 };

if (!haveChromium) console.warn(`browser-webgpu.test: SKIPPED — no Chromium at ${CHROMIUM}`);
const maybe = haveChromium ? describe : describe.skip;

type Checks = { [K in keyof BrowserChecks]: Awaited<ReturnType<BrowserChecks[K]>> };

maybe('our WebGPU kernels in headless Chromium', () => {
  let server: http.Server;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let base: string;
  let hasAdapter = false;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    await bundlePage(path.join(ROOT, 'test', 'browser-checks.ts'), OUT);
    // The tiny-shapes pipeline as a float16 folder, served next to the page.
    await convertPipeline(path.join(ROOT, 'assets', 'tiny-shapes'), path.join(OUT, 'tiny-shapes-f16'), { quantize: 'float16' });
    server = await serve(ROOT);
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    profile = await mkdtemp(path.join(os.tmpdir(), 'tgate-chromium-'));
    context = await launchChromium(profile);
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}/test-output/browser-webgpu/index.html`);
    await page.waitForFunction(() => 'tgateChecks' in window, null, { timeout: 30000 });
    hasAdapter = await page.evaluate(() => (window as unknown as { tgateChecks: BrowserChecks }).tgateChecks.hasWebGPU());
    if (!hasAdapter) console.warn('browser-webgpu.test: SKIPPED — Chromium offers no WebGPU adapter here');
  }, 180000);

  afterAll(async () => {
    await context?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  /** Runs one of window.tgateChecks in the page. */
  function inPage<K extends keyof BrowserChecks>(name: K, ...args: Parameters<BrowserChecks[K]>): Promise<Checks[K]> {
    return page.evaluate(([n, a]) => ((window as unknown as { tgateChecks: Record<string, (...x: unknown[]) => unknown> }).tgateChecks[n]!(...a)), [name, args] as const) as Promise<Checks[K]>;
  }

  test('fused attention equals the reference within 1e-5 and needs no split', async () => {
    if (!hasAdapter) return;
    const r = (await inPage('attention')) as AttentionReport;
    console.log(`[chromium webgpu] fused attention:\n${r.cases.map((c) => `${c.name}: fused ${c.relL2.toExponential(2)} (${c.fusedSplits} splits), plain ${c.plainRelL2.toExponential(2)} (${c.plainSplits} split)`).join('\n')}`);
    expect(r.cases.map((c) => c.name)).toEqual(ATTENTION_CASES.map((c) => c.name));
    for (const c of r.cases) {
      expect([c.name, c.relL2]).toEqual([c.name, expect.any(Number)]);
      expect(c.relL2).toBeLessThanOrEqual(1e-5);
      expect(c.plainSplits).toBe(1);
      expect(c.fusedSplits).toBe(0);
    }
    expect(r.leaked).toBe(0);
    expect(pageErrors).toEqual([]);
  }, 600000);

  test('float16 kernels equal the float32 ops given the same weights', async () => {
    if (!hasAdapter) return;
    const r = await inPage('halfKernels');
    console.log(`[chromium webgpu] float16 kernels: ${Object.entries(r.relL2).map(([k, v]) => `${k} ${v.toExponential(2)}`).join('; ')}; pieces ${JSON.stringify(r.pieces)}`);
    for (const v of Object.values(r.relL2)) expect(v).toBeLessThanOrEqual(1e-6);
    expect(r.pieces).toEqual({ float32: 4, float16: 2, largestBinding: expect.any(Number), over: 0 });
    expect(r.leaked).toBe(0);
  }, 600000);

  test('float16 weights reproduce float32 on tiny-shapes with half the bytes, from a float32 or a float16 folder', async () => {
    if (!hasAdapter) return;
    const f32Folder = `${base}/assets/tiny-shapes-tfjs/`;
    const f16Folder = `${base}/test-output/browser-webgpu/tiny-shapes-f16/`;
    const a = await inPage('generate', f32Folder, 'float32', CALL);
    const b = await inPage('generate', f32Folder, 'float16', CALL);
    const c = await inPage('generate', f16Folder, 'float16', CALL);
    const e = (x: number) => x.toExponential(2);
    console.log([
      `[chromium webgpu] tiny-shapes ${CALL.size}², ${CALL.steps} steps, float16 vs float32 weights: latents ${e(relL2(b.latents, a.latents))}, image ${e(relL2(b.rgb, a.rgb))}; weights ${b.weightBytes} vs ${a.weightBytes} bytes (${(b.weightBytes / a.weightBytes).toFixed(4)})`,
      `from the float16 folder (biases and norms rounded too): latents ${e(relL2(c.latents, a.latents))}, image ${e(relL2(c.rgb, a.rgb))}; weights ${c.weightBytes} bytes`,
    ].join('\n'));
    for (const x of [b, c]) {
      expect(relL2(x.rgb, a.rgb)).toBeLessThanOrEqual(1e-3);
      // Classifier-free guidance (7.5) amplifies the weights' rounding in the latents.
      expect(relL2(x.latents, a.latents)).toBeLessThanOrEqual(2e-3);
      expect(Math.abs(x.weightBytes / a.weightBytes - 0.5)).toBeLessThanOrEqual(0.005);
    }
    expect(pageErrors).toEqual([]);
  }, 900000);
});
