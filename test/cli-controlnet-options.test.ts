/**
 * The ControlNet CLI flags (src/cli/controlnet-options.ts) parsed by yargs and mapped to loadPipeline / generate
 * options: repeated flags, one value or one per ControlNet, errors naming the flags, and a generation from the
 * mapped options (PNG control image) equal to the same call made with the image as a tensor.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import yargs from 'yargs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, useBackend } from './support/helpers.js';
import { controlnetGenerateOptions, controlnetLoadOptions, controlnetOptions, type ControlNetArgs } from '../src/cli/controlnet-options.js';
import { decodePNG, encodePNG, type RGBImage } from '../src/io/png.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';

const parse = (argv: string[]): ControlNetArgs => yargs(argv).options(controlnetOptions).strict().parseSync() as ControlNetArgs;
const image = (w: number, h: number): RGBImage => ({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(7) });
/** Reads nothing: each "file" is an image whose width is the file name's length (to see which went where). */
const fakeRead = async (file: string) => image(file.length, 1);

test('flags map to loadPipeline and generate options', async () => {
  expect(controlnetLoadOptions(parse([]))).toEqual({});
  expect(await controlnetGenerateOptions(parse([]), fakeRead)).toEqual({});
  const one = parse(['--controlnet', 'cn', '--control-image', 'e.png', '--control-scale', '0.8', '--control-guidance-end', '0.6', '--guess-mode']);
  expect(controlnetLoadOptions(one)).toEqual({ controlnet: 'cn' });
  expect(await controlnetGenerateOptions(one, fakeRead)).toEqual({
    controlImage: image(5, 1), controlnetConditioningScale: 0.8, controlGuidanceEnd: 0.6, guessMode: true,
  });
  const two = parse(['--controlnet', 'a', '--controlnet', 'https://x/b', '--control-image', 'a.png', '--control-image', 'bb.png',
    '--control-scale', '0.5', '--control-scale', '1', '--control-guidance-start', '0.1']);
  expect(controlnetLoadOptions(two)).toEqual({ controlnet: ['a', 'https://x/b'] });
  expect(await controlnetGenerateOptions(two, fakeRead)).toEqual({
    controlImage: [image(5, 1), image(6, 1)], controlnetConditioningScale: [0.5, 1], controlGuidanceStart: 0.1,
  });
  // Without --controlnet: the pipeline folder's own ControlNet(s).
  expect(await controlnetGenerateOptions(parse(['--control-image', 'e.png']), fakeRead)).toEqual({ controlImage: image(5, 1) });
});

test('errors name the flags', async () => {
  const bad: [string[], string][] = [
    [['--controlnet', 'cn'], '--controlnet needs --control-image FILE (one per --controlnet: 1)'],
    [['--controlnet', 'a', '--controlnet', 'b', '--control-image', 'x.png'], '--control-image: give one per --controlnet (2), got 1'],
    [['--control-scale', '0.5'], '--control-scale needs --control-image FILE (and --controlnet DIR unless the pipeline folder has a ControlNet)'],
    [['--controlnet', 'cn', '--control-image', 'x.png', '--control-scale', 'strong'], '--control-scale must be a number, got NaN'],
    [['--controlnet', 'cn', '--control-image', 'x.png', '--control-guidance-end', '0.5', '--control-guidance-end', '0.7'],
      '--control-guidance-end: give one value, or one per --controlnet (1), got 2'],
  ];
  for (const [argv, msg] of bad) await expect(controlnetGenerateOptions(parse(argv), fakeRead)).rejects.toThrow(msg);
  expect(() => controlnetLoadOptions({ controlnet: [''] })).toThrow('--controlnet takes a folder (path or URL)');
});

test('a generation from the mapped flags (PNG image) equals the same call with the image as a tensor', async () => {
  await useBackend('wasm');
  const g = await loadFixture('ext2/controlnet/sd15_tiny_controlnet_ddim_baseline.safetensors');
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'tgate-cn-cli-'));
  const sched = readPythonJson<{ sd15_tiny_controlnet_ddim: { scheduler: { config_passed: Record<string, unknown> } } }>(fixture('ext2/controlnet/index.json'));
  try {
    const bytes = tf.tidy(() => tf.round(tf.mul(g['in.image'], 255)));
    const png: RGBImage = { width: 96, height: 96, data: Uint8Array.from(tf.tidy(() => bytes.squeeze([0]).transpose([1, 2, 0])).dataSync()) };
    await writeFile(path.join(tmp, 'edges.png'), await encodePNG(png));
    const args = parse(['--controlnet', fixture('ext2/models/sd15_tiny_controlnet'), '--control-image', path.join(tmp, 'edges.png'), '--control-scale', '0.7']);
    const pipe = await loadPipeline(fixture('pipelines/sd15_tiny'), controlnetLoadOptions(args)) as StableDiffusionPipeline;
    pipe.scheduler.dispose();
    pipe.scheduler = schedulerFromConfig(sched.sd15_tiny_controlnet_ddim.scheduler.config_passed, 'DDIMScheduler');
    const call = { promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], latents: g['in.latents'], numInferenceSteps: 3, outputType: 'latent' as const };
    const fromFlags = (await pipe.generate({ ...call, ...await controlnetGenerateOptions(args, async (f) => decodePNG(await readFile(f))) })).latents;
    const asTensor = tf.tidy(() => tf.div(bytes, 255));
    const direct = (await pipe.generate({ ...call, controlImage: asTensor, controlnetConditioningScale: 0.7 })).latents;
    expect(Buffer.compare(Buffer.from(fromFlags.dataSync().buffer), Buffer.from(direct.dataSync().buffer))).toBe(0);
    tf.dispose([bytes, asTensor, fromFlags, direct]);
    pipe.dispose();
  } finally {
    tf.dispose(Object.values(g));
    await rm(tmp, { recursive: true, force: true });
  }
}, 120_000);
