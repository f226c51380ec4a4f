/**
 * The browser demo (examples/browser, bundled by build.mjs) in headless Debian Chromium: the converted
 * tiny-shapes model fetched from a local server generates the same pixels on wasm, WebGL and WebGPU
 * (SwiftShader) as Node's wasm backend for the same seed and settings. Skipped only without /usr/bin/chromium.
 */
// Time limits are several times what a quiet 2-core machine needs (wasm ~5 s, webgl ~30 s, webgpu ~60 s):
// CI runs two test files at once, and a loaded machine must not fail a check whose images still match.
import type http from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { useBackend } from './support/helpers.js';
import { CHROMIUM, haveChromium, launchChromium, serve } from './support/browser.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { TgateOptions } from '../src/attention/tgate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'test-output');
/** Mean absolute difference of 8-bit RGB against Node, in levels: 2/255 of full scale. */
const MAD_BOUND = 2;

interface Settings { prompt: string; steps: number; guidance: number; seed: number; size: number; tgate: TgateOptions | null }
interface Result { backend: string; width: number; height: number; rgb: number[]; ms: number }

const PROMPT = 'a large blue circle in the center';
// Kept small: SwiftShader runs WebGL and WebGPU on the CPU (WebGPU ~10 s/step plus ~30 s of shader compiles).
const COMBOS: Record<'wasm' | 'webgl' | 'webgpu', Settings[]> = {
  wasm: [
    { prompt: PROMPT, steps: 10, guidance: 7.5, seed: 42, size: 64, tgate: null },
    { prompt: PROMPT, steps: 10, guidance: 7.5, seed: 42, size: 64, tgate: { gateStep: 5, spInterval: 3, fiInterval: 1, warmUp: 1 } },
  ],
  webgl: [{ prompt: PROMPT, steps: 5, guidance: 7.5, seed: 42, size: 64, tgate: { gateStep: 3, spInterval: 2, fiInterval: 1, warmUp: 1 } }],
  webgpu: [{ prompt: 'a small red square on the right', steps: 2, guidance: 7.5, seed: 7, size: 32, tgate: null }],
};

if (!haveChromium) console.warn(`browser.test: SKIPPED — no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
const maybe = haveChromium ? describe : describe.skip;

function mad(a: ArrayLike<number>, b: ArrayLike<number>): { mean: number; max: number } {
  expect(a.length).toBe(b.length);
  let s = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    s += d;
    max = Math.max(max, d);
  }
  return { mean: s / a.length, max };
}

maybe('browser demo (headless Chromium)', () => {
  let server: http.Server;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let nodePipe: StableDiffusionPipeline;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    execFileSync(process.execPath, [path.join(ROOT, 'examples/browser/build.mjs')], { cwd: ROOT, stdio: 'pipe' });
    server = await serve(ROOT);
    const { port } = server.address() as { port: number };
    profile = await mkdtemp(path.join(os.tmpdir(), 'tgate-chromium-'));
    context = await launchChromium(profile);
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/examples/browser/dist/index.html`);
    await page.waitForFunction(() => 'tgateDemo' in window, null, { timeout: 120000 });
    await useBackend('wasm');
    nodePipe = (await loadPipeline(path.join(ROOT, 'assets/tiny-shapes-tfjs'))) as StableDiffusionPipeline;
  }, 300000);

  afterAll(async () => {
    nodePipe?.dispose();
    await context?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  async function nodeRgb(s: Settings): Promise<Uint8Array> {
    const { latents, images } = await nodePipe.generate({
      prompt: s.prompt, numInferenceSteps: s.steps, guidanceScale: s.guidance, seed: s.seed, height: s.size, width: s.size, tgate: s.tgate,
    });
    latents.dispose();
    return images[0]!.data;
  }

  async function check(backend: 'wasm' | 'webgl' | 'webgpu'): Promise<void> {
    for (const s of COMBOS[backend]) {
      const got = await page.evaluate(([b, st]) => (window as unknown as { tgateDemo: { generate(b: string, s: unknown): Promise<Result> } })
        .tgateDemo.generate(b, st), [backend, s] as const);
      expect(got.backend).toBe(backend);
      expect([got.width, got.height]).toEqual([s.size, s.size]);
      const ref = await nodeRgb(s);
      const d = mad(got.rgb, ref);
      console.log(`[browser ${backend}] ${s.steps} steps ${s.size}px ${s.tgate ? 'TGATE' : 'plain'}: ${got.ms.toFixed(0)} ms in page; MAD vs Node wasm ${d.mean.toFixed(4)}/255 (max ${d.max})`);
      expect(d.mean).toBeLessThanOrEqual(MAD_BOUND);
    }
    await mkdir(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, `browser-${backend}.png`) });
    expect(pageErrors).toEqual([]);
  }

  test('wasm matches Node', () => check('wasm'), 300000);
  test('the compare button runs without and with TGATE and shows both times', async () => {
    await page.selectOption('#backend', 'wasm');
    await page.fill('#steps', '10');
    await page.click('#compare');
    await page.waitForFunction(() => /faster/.test(document.getElementById('status')!.textContent ?? ''), null, { timeout: 240000 });
    const [plain, gated, msg] = await Promise.all(['#time-plain', '#time-tgate', '#status'].map((sel) => page.textContent(sel)));
    console.log(`[browser compare] without ${plain}, with ${gated}: ${msg}`);
    expect(plain).toMatch(/^\d+\.\d\d s on wasm$/);
    expect(gated).toMatch(/^\d+\.\d\d s on wasm$/);
    await page.screenshot({ path: path.join(OUT, 'browser-compare.png') });
  }, 300000);

  test('webgl matches Node', () => check('webgl'), 450000);

  test('webgpu matches Node (when the browser offers an adapter)', async () => {
    const has = await page.evaluate(() => (window as unknown as { tgateDemo: { hasWebGPU(): Promise<boolean> } }).tgateDemo.hasWebGPU());
    if (!has) {
      console.warn('browser.test: webgpu SKIPPED — Chromium offers no WebGPU adapter here');
      return;
    }
    await check('webgpu');
  }, 600000);

  test('sizes that cannot fit the device are refused with the reason', async () => {
    const msg = await page.evaluate(() => (window as unknown as { tgateDemo: { checkSize(b: string, s: unknown): Promise<string | null> } })
      .tgateDemo.checkSize('webgl', { prompt: '', steps: 1, guidance: 7.5, seed: 0, size: 2048, tgate: null }));
    expect(msg).toMatch(/cannot run that size[\s\S]*VAE decoder activation needs 512\.0 MiB, over the 256\.0 MiB buffer limit of webgl/);
    const ok = await page.evaluate(() => (window as unknown as { tgateDemo: { checkSize(b: string, s: unknown): Promise<string | null> } })
      .tgateDemo.checkSize('webgl', { prompt: '', steps: 1, guidance: 7.5, seed: 0, size: 64, tgate: null }));
    expect(ok).toBeNull();
  });
});
