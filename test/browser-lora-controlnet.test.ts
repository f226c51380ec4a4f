/**
 * LoRA and ControlNet in a real browser (headless Chromium, wasm): the page loads the tiny SD pipeline and
 * its ControlNet as converted TF.js folders and the LoRA safetensors file (by HTTP ranges: a HEAD, then one
 * read-ahead window), all by URL from a local server, and runs test/support/lora-controlnet-run.ts (before the
 * LoRA, unfused, fused, fused with TGATE, fused at conditioning scale 0); Node runs the same on wasm from the
 * local folders. Every run's latents match Node's (same backend: only the thread count differs), the LoRA and
 * the ControlNet each move the result, and neither side leaks a tensor. Skipped only without /usr/bin/chromium.
 */
// The page needs ~10 s on a quiet 2-core machine; limits are far above that for a loaded one.
import type http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { CHROMIUM, bundlePage, haveChromium, launchChromium, serve } from './support/browser.js';
import { relL2, useBackend } from './support/helpers.js';
import { RUNS, loraControlnetRun, type LoraControlnetResult, type LoraControlnetSettings, type LoraControlnetSources } from './support/lora-controlnet-run.js';
import type { LoraControlnetPage } from './browser-lora-controlnet-page.js';
import { convertComponent, convertPipeline } from '../src/convert/convert.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'test-output', 'browser-lora-controlnet');
const MODELS = path.join(OUT, 'models');
const LORA = 'test/fixtures/ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors';
// The recorded LoRA runs' scale (test/lora-pipeline.test.ts); TGATE gates at step 2 of 4.
const SETTINGS: LoraControlnetSettings = {
  prompt: 'a white ring', seed: 11, steps: 4, size: 64, loraScale: 0.8, tgate: { gateStep: 2, spInterval: 1, fiInterval: 1, warmUp: 1 },
};
/** Page vs Node, same backend and weights: only XNNPACK's thread count differs. */
const MATCH_BOUND = 1e-5;
/** A LoRA or a ControlNet that is really applied moves the latents by more than this. */
const EFFECT_BOUND = 1e-3;

if (!haveChromium) console.warn(`browser-lora-controlnet.test: SKIPPED — no Chromium at ${CHROMIUM}`);
const maybe = haveChromium ? describe : describe.skip;

maybe('LoRA and ControlNet in headless Chromium (wasm)', () => {
  let server: http.Server;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let base: string;
  const requests: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    await rm(OUT, { recursive: true, force: true });
    await bundlePage(path.join(ROOT, 'test', 'browser-lora-controlnet-page.ts'), path.join(OUT, 'page'));
    await convertPipeline(path.join(ROOT, 'test/fixtures/pipelines/sd15_tiny'), path.join(MODELS, 'sd15_tiny'));
    await convertComponent(path.join(ROOT, 'test/fixtures/ext2/models/sd15_tiny_controlnet'), path.join(MODELS, 'controlnet'));
    server = await serve(ROOT, requests);
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    profile = await mkdtemp(path.join(os.tmpdir(), 'tgate-chromium-'));
    context = await launchChromium(profile);
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}/test-output/browser-lora-controlnet/page/index.html`);
    await page.waitForFunction(() => 'tgateLoraControlnet' in window, null, { timeout: 120000 });
  }, 300000);

  afterAll(async () => {
    await context?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  test('the page loads the converted pipeline, ControlNet and LoRA by URL and generates what Node does', async () => {
    const urls: LoraControlnetSources = {
      pipeline: `${base}/test-output/browser-lora-controlnet/models/sd15_tiny/`,
      controlnet: `${base}/test-output/browser-lora-controlnet/models/controlnet/`,
      lora: `${base}/${LORA}`,
    };
    const got = await page.evaluate(([u, s]) => (window as unknown as { tgateLoraControlnet: LoraControlnetPage }).tgateLoraControlnet.run(u, s), [urls, SETTINGS] as const);
    await useBackend('wasm');
    const t0 = performance.now();
    const want: LoraControlnetResult = await loraControlnetRun(
      { pipeline: path.join(MODELS, 'sd15_tiny'), controlnet: path.join(MODELS, 'controlnet'), lora: path.join(ROOT, LORA) }, SETTINGS);
    const nodeMs = performance.now() - t0;

    const vsNode = Object.fromEntries(RUNS.map((r) => [r, relL2(got.latents[r], want.latents[r])]));
    const L = got.latents;
    const loraEffect = relL2(L.lora, L.base);
    const controlnetEffect = relL2(L.lora, L.loraNoControl);
    const tgateEffect = relL2(L.loraTgate, L.lora);
    const unfusedVsFused = relL2(L.loraUnfused, L.lora);
    const e = (x: number) => x.toExponential(2);
    const loraReqs = requests.filter((q) => q.includes(LORA));
    console.log([
      `[chromium wasm] sd15_tiny + ControlNet + LoRA ${SETTINGS.loraScale}, ${SETTINGS.steps} steps ${SETTINGS.size}²: page ${(got.ms / 1000).toFixed(1)} s, Node ${(nodeMs / 1000).toFixed(1)} s`,
      `page vs Node rel-L2: ${RUNS.map((r) => `${r} ${e(vsNode[r]!)}`).join(', ')}`,
      `in the page: LoRA moves the latents by ${e(loraEffect)}, the ControlNet by ${e(controlnetEffect)}, TGATE by ${e(tgateEffect)}; unfused vs fused ${e(unfusedVsFused)}`,
      `tensors left: page ${JSON.stringify(got.leaked)}, Node ${JSON.stringify(want.leaked)}; the page read the LoRA in ${loraReqs.length} requests`,
    ].join('\n'));

    expect(got.backend).toBe('wasm');
    for (const r of RUNS) {
      expect(got.latents[r].length).toBe(4 * (SETTINGS.size / 8) ** 2);
      expect([r, vsNode[r]! <= MATCH_BOUND]).toEqual([r, true]);
    }
    expect(loraEffect).toBeGreaterThan(EFFECT_BOUND);
    expect(controlnetEffect).toBeGreaterThan(EFFECT_BOUND);
    expect(tgateEffect).toBeGreaterThan(EFFECT_BOUND);
    expect(unfusedVsFused).toBeLessThanOrEqual(MATCH_BOUND);
    expect(got.lora).toEqual(expect.objectContaining({ scale: SETTINGS.loraScale, fused: true, format: want.lora.format, modules: { unet: 48, text_encoder: 12 } }));
    expect(got.leaked).toEqual({ runs: 0, session: 0 });
    expect(want.leaked).toEqual({ runs: 0, session: 0 });

    // Everything came from the server; the LoRA file only by ranges, never whole, and with the read-ahead
    // window (8 MiB) the 85 KB file in one range after the HEAD (it was 123 requests: one per tensor).
    expect(requests).toContain('GET /test-output/browser-lora-controlnet/models/controlnet/model.json');
    expect(loraReqs).toContain(`HEAD /${LORA}`);
    expect(loraReqs.filter((q) => q.startsWith('GET')).every((q) => / bytes=\d+-\d+$/.test(q))).toBe(true);
    expect(loraReqs.length).toBeGreaterThanOrEqual(2);
    expect(loraReqs.length).toBeLessThanOrEqual(3);
    expect(pageErrors).toEqual([]);
  }, 600000);
});
