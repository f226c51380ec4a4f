/** Invalid generate() options are rejected before any work starts, with messages that name the problem. */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import type { SDGenerateOptions, StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { PixArtAlphaPipeline } from '../src/pipelines/pixart-alpha.js';
import { setWasmAllocationLimit, WasmHeapError } from '../src/backends/wasm/heap.js';

let sd: StableDiffusionPipeline;
let pixart: PixArtAlphaPipeline;
const embeds = tf.zeros([1, 77, 32]);

beforeAll(async () => {
  await useBackend('wasm');
  sd = (await loadPipeline(fixture('pipelines/sd15_tiny'))) as StableDiffusionPipeline;
  pixart = (await loadPipeline(fixture('pipelines/pixart_tiny'))) as PixArtAlphaPipeline;
}, 120_000);
afterAll(() => { sd.dispose(); pixart.dispose(); });

const base = { promptEmbeds: embeds, negativePromptEmbeds: embeds, numInferenceSteps: 10, outputType: 'latent' as const, height: 256, width: 256 };

test.each([
  ['gate beyond the steps', { tgate: { gateStep: 11 } }, /tgate.gateStep 11 is beyond the 10 inference steps/],
  ['negative interval', { tgate: { gateStep: 5, spInterval: -1 } }, /tgate.spInterval must be an integer ≥ 1, got -1/],
  ['negative warm-up', { tgate: { gateStep: 5, warmUp: -2 } }, /tgate.warmUp must be an integer ≥ 0, got -2/],
  ['lcm with guidance', { guidanceScale: 7.5, tgate: { gateStep: 2, lcm: true } }, /tgate.lcm is only valid without classifier-free guidance/],
  ['embeddings of the wrong width', { promptEmbeds: tf.zeros([1, 77, 48]) }, /promptEmbeds must have rank 3 with last dimension 32, got shape \[1,77,48\]/],
  ['height not divisible', { height: 100 }, /height 100 must be a positive multiple of 16/],
  ['zero steps', { numInferenceSteps: 0 }, /numInferenceSteps must be a positive integer, got 0/],
  ['deepcache interval', { deepcache: { cacheInterval: 0 } }, /deepcache.cacheInterval must be an integer ≥ 1, got 0/],
  ['a prompt that is a number', { promptEmbeds: undefined, prompt: 5 }, /prompt must be a string or a non-empty array of strings, got number/],
  ['an empty prompt list', { promptEmbeds: undefined, prompt: [] }, /prompt must be a string or a non-empty array of strings, got an empty array/],
  ['a prompt list with a number', { promptEmbeds: undefined, prompt: ['a', 2] }, /got an array with a non-string element/],
  ['prompt and promptEmbeds', { prompt: 'a' }, /give prompt or promptEmbeds, not both/],
  ['negatives that do not match the prompts', { promptEmbeds: undefined, negativePromptEmbeds: undefined, prompt: ['a', 'b'], negativePrompt: ['x', 'y', 'z'] },
    /negativePrompt has 3 entries but there are 2 prompts \(give one, or one per prompt\)/],
  ['negative embeddings of another batch', { negativePromptEmbeds: tf.zeros([2, 77, 32]) }, /negativePromptEmbeds has batch 2 but there are 1 prompts/],
  ['zero images per prompt', { numImagesPerPrompt: 0 }, /numImagesPerPrompt must be a positive integer, got 0/],
  ['too many images', { numImagesPerPrompt: 1000 }, /1 prompts × 1000 images per prompt = 1000 images, more than the 256/],
  ['a snake_case option', { negative_prompt: 'x' }, /StableDiffusionPipeline.generate: unknown option "negative_prompt" \(did you mean negativePrompt\?\)/],
  ['an unknown option', { numImages: 2 }, /unknown option "numImages"/],
  ['latents for one image when two are made', { numImagesPerPrompt: 2, latents: tf.zeros([1, 4, 32, 32]) }, /latents must have shape \[2,4,32,32\]/],
  ['strength without an image', { strength: 0.5 }, /strength needs image/],
  ['an image of another size', { image: tf.fill([1, 3, 64, 64], 0.5) }, /image is 64×64 but width×height 256×256 was asked: resize the image/],
  ['an image in [-1, 1]', { height: undefined, width: undefined, image: tf.fill([1, 3, 64, 64], -0.5) }, /image values must be in \[0, 1\], got min -0.5/],
  ['three images for two', { height: undefined, width: undefined, numImagesPerPrompt: 2, image: tf.fill([3, 3, 64, 64], 0.5) }, /image has 3 images, which does not divide the 2 images generated/],
  ['seed and generator', { seed: 1, generator: { randn: () => tf.zeros([1]) } }, /give seed or generator, not both/],
  ['clipSkip with embeddings', { clipSkip: 1 }, /clipSkip has no effect with promptEmbeds/],
  ['strength that runs no step', { height: undefined, width: undefined, image: tf.fill([1, 3, 64, 64], 0.5), strength: 0.05 }, /strength 0.05 × 10 steps leaves no step to run/],
])('SD: %s', async (_name, bad, msg) => {
  const before = tf.memory().numTensors;
  let steps = 0;
  // Untyped on purpose: the table holds values the types forbid (what a JS caller can still pass).
  await expect(sd.generate({ ...base, ...bad, onStep: () => { steps++; } } as SDGenerateOptions)).rejects.toThrow(msg);
  expect(steps).toBe(0);
  expect(tf.memory().numTensors).toBe(before);
  expect(sd.unet.attnProcessors().values().next().value?.constructor.name).toBe('AttnProcessorDefault');
});

test('PixArt: width not divisible by the VAE × patch factor, and wrong caption width', async () => {
  const e = tf.zeros([1, 12, 32]);
  await expect(pixart.generate({ promptEmbeds: e, negativePromptEmbeds: e, width: 120, height: 128 })).rejects.toThrow(/width 120 must be a positive multiple of 16/);
  await expect(pixart.generate({ promptEmbeds: tf.zeros([1, 12, 8]) })).rejects.toThrow(/promptEmbeds must have rank 3 with last dimension 32/);
});

test('the SD baseline decodes to diffusers’ image', async () => {
  const g = await loadFixture('tgate/sd15_ddim_baseline.safetensors');
  const shipped = sd.scheduler;
  const index = readPythonJson<{ cases: Record<string, { config_passed: Record<string, unknown> }> }>(fixture('schedulers/index.json'));
  sd.scheduler = schedulerFromConfig(index.cases.ddim_sd.config_passed, 'DDIMScheduler');
  const { latents } = await sd.generate({
    promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], latents: g['in.latents'],
    numInferenceSteps: 10, guidanceScale: 7.5, outputType: 'latent',
  });
  const img = tf.tidy(() => sd.vae.decode(tf.div(latents, sd.vae.config.scalingFactor)));
  const err = relL2T(img, g.decoded_image);
  console.log(`decoded image rel-L2 ${err.toExponential(2)}`);
  expect(err).toBeLessThanOrEqual(1e-4);
  sd.scheduler.dispose();
  sd.scheduler = shipped;
  tf.dispose([latents, img, ...Object.values(g)]);
}, 120_000);

test('an error thrown from onStep mid-run leaves no tensor behind', async () => {
  const before = tf.memory().numTensors;
  await expect(sd.generate({ ...base, numInferenceSteps: 3, tgate: { gateStep: 2 }, onStep: ({ step }) => { if (step === 1) throw new Error('stop here'); } }))
    .rejects.toThrow('stop here');
  expect(tf.memory().numTensors).toBe(before);
}, 60_000);

describe('a tensor too large for the wasm heap', () => {
  // The guard's limit on one allocation stands in for a full heap (no gigabytes allocated): sd15_tiny's largest
  // tensor is 512 KiB in the denoising loop and 2 MiB in the VAE decode at 128×128, 4 MiB in the loop at 256×256.
  afterEach(() => setWasmAllocationLimit(null));
  const size = { promptEmbeds: embeds, negativePromptEmbeds: embeds, numInferenceSteps: 2, seed: 1, tgate: { gateStep: 1 } };

  test.each([
    ['in the VAE decode', { ...size, height: 128, width: 128 }, 1 << 20,
      /^wasm heap exhausted while generating 1 image of 128×128: a tensor of 2\.0 MiB does not fit \(the heap holds .* of its 4 GiB\)\. Lower height and width \(--height, --width\), or use another backend\.$/],
    ['in the denoising loop, two images', { ...size, height: 256, width: 256, numImagesPerPrompt: 2 }, 2 << 20,
      /^wasm heap exhausted while generating 2 images of 256×256: .* Lower height and width \(--height, --width\) or fewer images \(numImagesPerPrompt \/ --num-images, or fewer prompts\), or use another backend\.$/],
  ])('%s names the size options, not offload; nothing is left behind', async (_name, o, limit, msg) => {
    const alone = await sd.generate({ ...o, height: 64, width: 64 });
    const before = tf.memory().numTensors;
    const procs = [...sd.unet.attnProcessors().values()];
    setWasmAllocationLimit(limit);
    const progress: string[] = [];
    const call = sd.generate({ ...o, onProgress: (p) => { progress.push(p.phase); } });
    await expect(call).rejects.toThrow(msg);
    await expect(call).rejects.toBeInstanceOf(WasmHeapError);
    setWasmAllocationLimit(null);
    expect(progress.includes('decode')).toBe(o.height === 128);
    expect(tf.memory().numTensors).toBe(before);
    [...sd.unet.attnProcessors().values()].forEach((p, i) => expect(p).toBe(procs[i]));
    const again = await sd.generate({ ...o, height: 64, width: 64 });
    expect(relL2T(again.latents, alone.latents)).toBe(0);
    tf.dispose([alone.latents, again.latents]);
  }, 60_000);

  test('while loading, the weights are what does not fit: the error still says offload', async () => {
    const before = tf.memory().numTensors;
    setWasmAllocationLimit(64 << 10);
    await expect(loadPipeline(fixture('pipelines/sd15_tiny'))).rejects.toThrow(/^wasm heap exhausted: a tensor of .* Load the model with offload/);
    setWasmAllocationLimit(null);
    expect(tf.memory().numTensors).toBe(before);
  }, 60_000);
});
