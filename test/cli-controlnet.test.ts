/**
 * `tgate generate --controlnet DIR --control-image FILE …` run as a user runs it (the built CLI in a child
 * process) and compared bit for bit with the API in this process (both on wasm), with and without TGATE; and the
 * ControlNet flags checked before anything loads, errors naming the flags.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture, useBackend } from './support/helpers.js';
import { ensureBuilt, readImage, sameImage, tgate } from './support/cli.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { encodePNG, type RGBImage } from '../src/io/png.js';
import { ringImage } from './support/lora-controlnet-run.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';

const SD = fixture('pipelines/sd15_tiny');
const CN = fixture('ext2/models/sd15_tiny_controlnet');
let tmp: string;
let pipe: StableDiffusionPipeline;
let edges: RGBImage;

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-cli-cn-'));
  edges = ringImage(64);
  writeFileSync(path.join(tmp, 'edges.png'), await encodePNG(edges));
  await useBackend('wasm');
  pipe = (await loadPipeline(SD, { controlnet: CN })) as StableDiffusionPipeline;
}, 300_000);
afterAll(() => {
  pipe?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const out = (name: string): string => path.join(tmp, name);
const BASE = ['generate', SD, '--prompt', 'a ring', '--steps', '6', '--seed', '3', '--backend', 'wasm'];

test.each([
  ['baseline', [], undefined],
  ['TGATE gate 3', ['--gate-step', '3'], { gateStep: 3 }],
])('--controlnet --control-image --control-scale --control-guidance-end (%s) equals the API\'s run bit for bit', async (_, flags, tgateOpt) => {
  const file = out(`cn-${flags.length}.png`);
  await tgate(...BASE, '--height', '64', '--width', '64', '--controlnet', CN, '--control-image', out('edges.png'), '--control-scale', '0.8',
    '--control-guidance-end', '0.8', ...flags, '--output', file);
  const got = await readImage(file);
  const { latents, images } = await pipe.generate({
    prompt: 'a ring', numInferenceSteps: 6, seed: 3, height: 64, width: 64, controlImage: edges,
    controlnetConditioningScale: 0.8, controlGuidanceEnd: 0.8, tgate: tgateOpt,
  });
  latents.dispose();
  expect(sameImage(got, images[0])).toBe(true);
  // The ControlNet changes the image: the same run without it differs.
  const plain = await pipe.generate({ prompt: 'a ring', numInferenceSteps: 6, seed: 3, height: 64, width: 64, controlImage: edges, controlnetConditioningScale: 0 });
  plain.latents.dispose();
  expect(sameImage(got, plain.images[0])).toBe(false);
}, 180_000);

test.each([
  [['--controlnet', CN], '--controlnet needs --control-image FILE (one per --controlnet: 1)'],
  [['--control-scale', '0.5'], '--control-scale needs --control-image FILE'],
  [['--controlnet', path.join(os.tmpdir(), 'no-such-controlnet'), '--control-image', 'x.png'], 'no such folder'],
  [['--controlnet', CN, '--control-image', 'EDGES', '--control-image', 'EDGES'], '--control-image: give one per --controlnet (1), got 2'],
  [['--controlnet', CN, '--control-image', 'EDGES', '--control-scale', '1', '--control-scale', '2'], '--control-scale: give one value, or one per --controlnet (1), got 2'],
  [['--control-image', 'EDGES'], '--control-image needs --controlnet DIR: StableDiffusionPipeline has no ControlNet of its own'],
  [['--controlnet', CN, '--control-image', 'EDGES', '--height', '32', '--width', '32'], 'is 64×64 but the image generated is 32×32: resize it'],
  [['--controlnet', CN, '--control-image', 'EDGES', '--control-guidance-start', '0.9', '--control-guidance-end', '0.5'], '--control-guidance-start 0.9 and --control-guidance-end 0.5 must satisfy 0 ≤ start < end ≤ 1'],
])('%j is refused before loading, naming the flag', async (flags, message) => {
  const args = flags.map((f) => (f === 'EDGES' ? out('edges.png') : f));
  const err = await tgate(...BASE, ...args, '--output', out('never.png')).then(() => null, (e: { stderr: string }) => e);
  expect(err).not.toBeNull();
  expect(err!.stderr).toContain(message);
  expect(err!.stderr).not.toMatch(/loading/);
}, 60_000);
