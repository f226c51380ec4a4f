/**
 * `tgate generate` with the bundled demo model, run as a user runs it (the built CLI in a child process) and
 * compared bit for bit with the API in this process (both on wasm): batches of prompts and images and where
 * they are written, the contact sheet, img2img and inpainting, the random seed and the seed that repeats it,
 * --list-schedulers.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { useBackend } from './support/helpers.js';
import { ensureBuilt, readImage, sameImage, tgate } from './support/cli.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { demoModelDir } from '../src/io/demo-model.js';
import { encodePNG, type RGBImage } from '../src/io/png.js';
import { SCHEDULER_LIST } from '../src/samplers/index.js';
import type { StableDiffusionPipeline, SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';

let tmp: string;
let pipe: StableDiffusionPipeline;

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-cli-gen-'));
  await useBackend('wasm');
  pipe = (await loadPipeline(demoModelDir())) as StableDiffusionPipeline;
}, 300_000);
afterAll(() => {
  pipe?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** The API's images for the same options (this process, wasm). */
async function apiImages(o: SDGenerateOptions): Promise<RGBImage[]> {
  const { latents, images } = await pipe.generate(o);
  latents.dispose();
  return images;
}

const out = (name: string): string => path.join(tmp, name);
const BATCH = ['--prompt', 'a small green triangle', '--prompt', 'a large blue square', '--num-images', '2', '--steps', '6', '--seed', '11', '--backend', 'wasm'];

test('--list-schedulers prints every sampler with a description, and loads nothing', async () => {
  const { stdout, stderr } = await tgate('generate', '--list-schedulers');
  const lines = stdout.trim().split('\n');
  expect(lines).toHaveLength(SCHEDULER_LIST.length);
  for (const s of SCHEDULER_LIST) expect(stdout).toMatch(new RegExp(`^${s.name}\\s+\\S`, 'm'));
  expect(stderr).not.toMatch(/backend|loading/);
});

test('two --prompt values × --num-images 2: four files NAME-0…3, four different images, equal to the API\'s batch', async () => {
  const { stdout } = await tgate('generate', ...BATCH, '--output', out('batch.png'));
  const files = [0, 1, 2, 3].map((i) => out(`batch-${i}.png`));
  expect(stdout).toContain(`wrote ${files.join(', ')}`);
  expect(existsSync(out('batch.png'))).toBe(false);
  const images = await Promise.all(files.map(readImage));
  for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) expect(sameImage(images[i], images[j])).toBe(false);
  const api = await apiImages({ prompt: ['a small green triangle', 'a large blue square'], numImagesPerPrompt: 2, numInferenceSteps: 6, seed: 11 });
  images.forEach((img, i) => expect(sameImage(img, api[i])).toBe(true));
}, 120_000);

test('--grid writes one contact sheet: a row per prompt, a column per image, 2-pixel gaps', async () => {
  await tgate('generate', ...BATCH, '--grid', '--output', out('grid.png'));
  const sheet = await readImage(out('grid.png'));
  expect([sheet.width, sheet.height]).toEqual([2 * 64 + 2, 2 * 64 + 2]);
  expect(existsSync(out('grid-0.png'))).toBe(false);
  for (let i = 0; i < 4; i++) {
    const x0 = (i % 2) * 66;
    const y0 = Math.floor(i / 2) * 66;
    const cell = new Uint8Array(64 * 64 * 3);
    for (let y = 0; y < 64; y++) cell.set(sheet.data.subarray(((y0 + y) * sheet.width + x0) * 3, ((y0 + y) * sheet.width + x0 + 64) * 3), y * 64 * 3);
    expect(sameImage({ width: 64, height: 64, data: cell }, await readImage(out(`batch-${i}.png`)))).toBe(true);
  }
}, 120_000);

test('--image --strength: img2img equals the API\'s run for the same seed, bit for bit', async () => {
  const input = out('batch-0.png');
  await tgate('generate', '--prompt', 'a large red circle', '--image', input, '--strength', '0.6', '--steps', '10', '--seed', '5',
    '--backend', 'wasm', '--output', out('i2i.png'));
  const got = await readImage(out('i2i.png'));
  const image = await readImage(input);
  const [want] = await apiImages({ prompt: 'a large red circle', image, strength: 0.6, numInferenceSteps: 10, seed: 5 });
  expect(sameImage(got, want)).toBe(true);
  expect(sameImage(got, image)).toBe(false);
}, 120_000);

test('--image --mask: inpainting equals the API\'s run for the same seed, bit for bit', async () => {
  const mask: RGBImage = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
  for (let i = 0; i < 64 * 64; i++) if (i % 64 >= 32) mask.data.fill(255, i * 3, i * 3 + 3);
  writeFileSync(out('mask.png'), await encodePNG(mask));
  const input = out('batch-1.png');
  await tgate('generate', '--prompt', 'a small yellow circle', '--image', input, '--mask', out('mask.png'), '--steps', '8', '--seed', '3',
    '--backend', 'wasm', '--output', out('inpaint.png'));
  const got = await readImage(out('inpaint.png'));
  const [want] = await apiImages({ prompt: 'a small yellow circle', image: await readImage(input), maskImage: mask, numInferenceSteps: 8, seed: 3 });
  expect(sameImage(got, want)).toBe(true);
}, 120_000);

test('without --seed each run draws its own seed and prints it; passing it back repeats the image exactly', async () => {
  const runs = await Promise.all(['r1.png', 'r2.png'].map(async (f) => {
    const { stderr } = await tgate('generate', '--prompt', 'a large purple triangle', '--steps', '4', '--backend', 'wasm', '--output', out(f));
    const m = /seed (\d+) \(pass --seed (\d+) to repeat\)/.exec(stderr);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(m![2]);
    // The progress goes on through the VAE decoding.
    expect(stderr).toMatch(/decoding 1\/1/);
    return { seed: m![1], image: await readImage(out(f)) };
  }));
  expect(runs[0].seed).not.toBe(runs[1].seed);
  expect(sameImage(runs[0].image, runs[1].image)).toBe(false);
  const { stderr } = await tgate('generate', '--prompt', 'a large purple triangle', '--steps', '4', '--seed', runs[0].seed, '--backend', 'wasm', '--output', out('r3.png'));
  expect(stderr).not.toMatch(/pass --seed/);
  expect(sameImage(await readImage(out('r3.png')), runs[0].image)).toBe(true);
}, 180_000);
