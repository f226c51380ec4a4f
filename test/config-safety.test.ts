/**
 * The issue-18 config cases, end to end: sizes that drive loops or allocation are bounded before anything is
 * built (a parameter budget catches products of in-bound keys), values of the wrong type or range fail naming
 * the file and key (scheduler configs through the same reader, with scheduler_config.json named when loaded
 * from a folder), and model_index.json is checked.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, useBackend } from './support/helpers.js';
import { ConfigError } from '../src/io/config.js';
import { modelFromConfig } from '../src/models/registry.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { loadPipeline } from '../src/pipelines/load.js';

type Cfg = Record<string, unknown>;
const read = (rel: string): Cfg => JSON.parse(fs.readFileSync(fixture(rel), 'utf8'));
const UNET = read('pipelines/sd15_tiny/unet/config.json');
const VAE = read('pipelines/sd15_tiny/vae/config.json');
const CLIP = { ...read('pipelines/sd15_tiny/text_encoder/config.json'), _class_name: 'CLIPTextModel' };
const T5 = { ...read('pipelines/pixart_tiny/text_encoder/config.json'), _class_name: 'T5EncoderModel' };
const CONTROLNET = read('ext2/models/sd15_tiny_controlnet/config.json');
const SCHED = read('pipelines/sd15_tiny/scheduler/scheduler_config.json');
const FILE = '/m/c/config.json';

let work: string;
beforeAll(async () => {
  await useBackend('cpu');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'config-safety-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** The error `f` throws, and how long it took (fails the test when `f` returns). */
function thrown(f: () => unknown): { e: Error; ms: number } {
  const t0 = Date.now();
  try {
    const m = f() as { dispose?: () => void };
    m?.dispose?.();
  } catch (e) {
    return { e: e as Error, ms: Date.now() - t0 };
  }
  throw new Error('expected an error');
}

describe('model configs: each bad value fails fast, naming the file and key', () => {
  test.each([
    // The cases (bounded on main already by the config reader; kept as regression tests).
    ['layers_per_block 1e6 (was: hangs at 3 GiB)', UNET, { layers_per_block: 1e6 }, /layers_per_block=1000000 is invalid: expected an integer in 1…64/],
    ['num_hidden_layers 1e5 (was: a 1.6-million-line error)', CLIP, { num_hidden_layers: 1e5 }, /num_hidden_layers=100000 is invalid: expected an integer in 1…256/],
    ['a negative padding', UNET, { downsample_padding: -1 }, /downsample_padding=-1 is invalid/],
    ['empty block lists', UNET, { down_block_types: [], up_block_types: [] }, /down_block_types=\[\] is invalid: expected a list of 1…16 entries/],
    ['a string where a list belongs', UNET, { block_out_channels: '32,64' }, /block_out_channels="32,64" is invalid: expected a list of 2 entries/],
    // Fixed here: values that gave silently wrong (infinite or NaN) outputs.
    ['scaling_factor 0 (was: accepted, latents divided by 0)', VAE, { scaling_factor: 0 }, /scaling_factor=0 is invalid: expected a number > 0/],
    ['scaling_factor -1 (was: accepted)', VAE, { scaling_factor: -1 }, /scaling_factor=-1 is invalid: expected a number > 0/],
    ['a latents_std of 0 (was: accepted)', VAE, { latents_mean: [0, 0, 0, 0], latents_std: [1, 0, 1, 1] }, /latents_std=0 \(entry 1\) is invalid: expected a number > 0/],
    ['mid_block_scale_factor 0 (was: accepted, a division by 0)', UNET, { mid_block_scale_factor: 0 }, /mid_block_scale_factor=0 is invalid: expected a number > 0/],
    ['resnet_out_scale_factor 0 (was: accepted)', UNET, { resnet_out_scale_factor: 0 }, /resnet_out_scale_factor=0 is invalid: expected a number > 0/],
    ['an eos_token_id outside the vocabulary (was: accepted, pooled row 0)', CLIP, { eos_token_id: 1e9 }, /eos_token_id=1000000000 is invalid: expected an integer in 0…528/],
  ])('%s', (_name, base, over, problem) => {
    const { e, ms } = thrown(() => modelFromConfig({ ...base, ...over }, FILE));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(FILE);
    expect(e.message).toMatch(problem);
    expect(ms).toBeLessThan(1000);
  });

  test('a null config names the file', () => {
    expect(thrown(() => modelFromConfig(null as never, FILE)).e.message).toMatch(/\/m\/c\/config\.json \(model\): the config is null/);
  });

  test.each([
    ['CLIP (was: accepted)', CLIP, { vocab_size: 262144, hidden_size: 16384, intermediate_size: 65536, num_hidden_layers: 256, num_attention_heads: 128 }],
    ['T5 (was: accepted)', T5, { vocab_size: 262144, d_model: 16384, d_kv: 1024, d_ff: 65536, num_layers: 256, num_heads: 256 }],
    ['VAE (was: accepted)', VAE, { block_out_channels: [16384, 16384, 16384, 16384], layers_per_block: 64 }],
    ['UNet', UNET, { block_out_channels: [16384, 16384], layers_per_block: 8 }],
    ['ControlNet (was: accepted)', CONTROLNET, { block_out_channels: [16384, 16384], layers_per_block: 8 }],
  ])('every key in bounds, but a config of billions of parameters is refused before it is built: %s', (_name, base, over) => {
    const before = tf.memory().numTensors;
    const { e, ms } = thrown(() => modelFromConfig({ ...base, ...over }, FILE));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/\/m\/c\/config\.json \(\w+\): the config asks for \d+(\.\d+)? billion parameters, more than the limit of 20 billion/);
    expect(ms).toBeLessThan(2000);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('scheduler configs go through the same reader', () => {
  test.each([
    ['num_train_timesteps "x" (was: all-NaN latents, exit 0)', { num_train_timesteps: 'x' }, /num_train_timesteps="x" is invalid: expected an integer in 2…100000/],
    ['num_train_timesteps 1e9 (was: 5.5 GiB)', { num_train_timesteps: 1e9 }, /num_train_timesteps=1000000000 is invalid/],
    ['beta_end 5', { beta_end: 5 }, /beta_end=5 is invalid: expected a number in 0…1/],
    ['an unknown beta_schedule', { beta_schedule: 'cosine' }, /beta_schedule="cosine" is not supported \(supported: "linear", "scaled_linear", "squaredcos_cap_v2"\)/],
  ])('%s', (_name, over, problem) => {
    const { e } = thrown(() => schedulerFromConfig({ ...SCHED, ...over }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/^PNDMScheduler config: /);
    expect(e.message).toMatch(problem);
  });

  test('a null scheduler config is a ConfigError (was: a TypeError)', () => {
    const { e } = thrown(() => schedulerFromConfig(null as never));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/the config is null, expected a JSON object/);
  });

  test('the file is named when given, and keys of other classes are kept (diffusers from_config)', () => {
    const { e } = thrown(() => schedulerFromConfig({ ...SCHED, steps_offset: -1 }, undefined, '/p/scheduler/scheduler_config.json'));
    expect(e.message).toMatch(/^\/p\/scheduler\/scheduler_config\.json \(PNDMScheduler\): steps_offset=-1 is invalid/);
    const s = schedulerFromConfig({ ...SCHED, solver_order: 'not mine', _use_default_values: ['beta_end'] }, 'DDIMScheduler');
    expect(s.config.solver_order).toBe('not mine');
    expect(s.config.beta_end).toBe(0.02);
  });
});

describe('loadPipeline names the pipeline’s files', () => {
  /** A copy of a fixture pipeline with `edit` applied to one of its JSON files. */
  function copyWith(name: string, rel: string, edit: (j: Cfg) => unknown): string {
    const dir = path.join(work, `${name}-${rel.replace(/\W/g, '_')}-${Math.random().toString(36).slice(2)}`);
    fs.cpSync(fixture('pipelines', name), dir, { recursive: true });
    fs.writeFileSync(path.join(dir, rel), JSON.stringify(edit(JSON.parse(fs.readFileSync(path.join(dir, rel), 'utf8')))));
    return dir;
  }

  test('a bad scheduler_config.json is named (was: only the class)', async () => {
    const dir = copyWith('sd15_tiny', 'scheduler/scheduler_config.json', (j) => ({ ...j, beta_end: 5 }));
    await expect(loadPipeline(dir)).rejects.toThrow(`${path.join(dir, 'scheduler', 'scheduler_config.json')} (PNDMScheduler): beta_end=5 is invalid`);
  });

  test.each([
    ['null', () => null, /model_index\.json: expected a JSON object, found null/],
    ['no _class_name', (j: Cfg) => ({ ...j, _class_name: undefined }), /model_index\.json: required key "_class_name" is missing/],
    ['a _class_name inherited from Object (was: a TypeError)', (j: Cfg) => ({ ...j, _class_name: 'constructor' }), /model_index\.json: unsupported pipeline _class_name "constructor" \(supported: StableDiffusionPipeline/],
    ['an entry that is not [library, class]', (j: Cfg) => ({ ...j, unet: ['diffusers'] }), /model_index\.json: component "unet"=\["diffusers"\] is invalid: expected \[library, class\]/],
    ['a component marked absent', (j: Cfg) => ({ ...j, unet: [null, null] }), /model_index\.json: component "unet" is marked absent, but a StableDiffusionPipeline needs it/],
    ['a component left out', (j: Cfg) => ({ ...j, vae: undefined }), /model_index\.json: component "vae" is missing, but a StableDiffusionPipeline needs it/],
    ['a component name that leaves the folder', (j: Cfg) => ({ ...j, '../x': ['diffusers', 'UNet2DConditionModel'] }), /model_index\.json: component name "\.\.\/x" has a "\.\." segment/],
  ])('model_index.json: %s', async (_name, edit, problem) => {
    const dir = copyWith('sd15_tiny', 'model_index.json', edit);
    const before = tf.memory().numTensors;
    await expect(loadPipeline(dir)).rejects.toThrow(problem);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('force_zeros_for_empty_prompt must be a boolean (was: any value accepted)', async () => {
    const dir = copyWith('sdxl_tiny', 'model_index.json', (j) => ({ ...j, force_zeros_for_empty_prompt: 'no' }));
    await expect(loadPipeline(dir)).rejects.toThrow(/model_index\.json: force_zeros_for_empty_prompt="no" is invalid: expected true or false/);
  });
});
