/**
 * The built CLI, run as a user runs it (`node bin/tgate.js …`): help, info, forward on every component
 * class against the goldens, tokenize, generate with the bundled demo model.
 */
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2T } from './support/helpers.js';
import { ROOT, ensureBuilt, tgate } from './support/cli.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { decodePNG } from '../src/io/png.js';

let tmp: string;

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-cli-'));
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('--help lists the commands', async () => {
  const { stdout } = await tgate('--help');
  for (const c of ['generate', 'forward', 'tokenize', 'convert', 'info']) expect(stdout).toContain(`tgate ${c}`);
});

test('info lists every backend and what auto picks', async () => {
  const { stdout } = await tgate('info');
  for (const b of ['node-gpu', 'node', 'webgpu', 'wasm', 'webgl', 'cpu']) expect(stdout).toMatch(new RegExp(`^${b}\\s+(yes|no)`, 'm'));
  expect(stdout).toMatch(/auto picks: (webgpu|wasm|cpu|node|node-gpu) \(/);
}, 60_000);

/** Writes `inputs` as a safetensors file, runs `tgate forward`, and compares each output with its golden. */
async function forward(dir: string, inputs: Record<string, tf.Tensor>, want: Record<string, tf.Tensor>, extra: string[] = []): Promise<void> {
  const inFile = path.join(tmp, `in-${path.basename(dir)}-${extra.join('')}.safetensors`);
  const outFile = inFile.replace('in-', 'out-');
  writeFileSync(inFile, encodeSafetensors(inputs, undefined, { int64: true }));
  await tgate('forward', dir, '--inputs', inFile, '--output', outFile, '--backend', 'wasm', ...extra);
  const out = await loadFixture(path.relative(fixture(), outFile));
  for (const [k, ref] of Object.entries(want)) {
    expect(out[k]).toBeDefined();
    expect(relL2T(out[k], ref)).toBeLessThanOrEqual(1e-4);
  }
  tf.dispose([...Object.values(out)]);
}

test('forward reproduces the UNet golden from an inputs file, resident and offloaded', async () => {
  const g = await loadFixture('goldens/sd15_tiny_unet_forward.safetensors');
  for (const extra of [[], ['--offload']]) {
    await forward(fixture('pipelines/sd15_tiny/unet'),
      { sample: g['in.sample'], timestep: tf.scalar(500, 'int32'), encoder_hidden_states: g['in.encoder_hidden_states'] }, { sample: g.out_t500 }, extra);
  }
  tf.dispose(Object.values(g));
}, 120_000);

test('forward runs the VAE (decode and encode), CLIP, T5 and PixArt', async () => {
  const vae = await loadFixture('goldens/vae_tiny_forward.safetensors');
  await forward(fixture('pipelines/sd15_tiny/vae'), { latents: vae['in.z'] }, { sample: vae.decode });
  await forward(fixture('pipelines/sd15_tiny/vae'), { sample: vae['in.x'] },
    { 'latent_dist.mean': vae['encode.mean'], 'latent_dist.logvar': vae['encode.logvar'] }, ['--mode', 'encode']);
  const clip = await loadFixture('goldens/clip_tiny_sd15_forward.safetensors');
  await forward(fixture('pipelines/sd15_tiny/text_encoder'), { input_ids: clip['in.input_ids'] },
    { last_hidden_state: clip.last_hidden_state, penultimate_hidden_state: clip.hidden_states_penultimate, pooler_output: clip.pooler_output });
  const t5 = await loadFixture('goldens/t5_tiny_forward.safetensors');
  await forward(fixture('pipelines/pixart_tiny/text_encoder'), { input_ids: t5['in.input_ids'], attention_mask: t5['in.attention_mask'] },
    { last_hidden_state: t5.last_hidden_state });
  const px = await loadFixture('goldens/pixart_tiny_noac_forward.safetensors');
  await forward(fixture('models/pixart_tiny_noac'), {
    hidden_states: px['in.hidden_states'], timestep: px['in.timestep'], encoder_hidden_states: px['in.encoder_hidden_states'],
    encoder_attention_mask: px['in.encoder_attention_mask'],
  }, { sample: px.out });
  tf.dispose([...Object.values(vae), ...Object.values(clip), ...Object.values(t5), ...Object.values(px)]);
}, 300_000);

test('forward names a missing input', async () => {
  const f = path.join(tmp, 'bad.safetensors');
  writeFileSync(f, encodeSafetensors({ sample: tf.zeros([1, 4, 8, 8]) }));
  await expect(tgate('forward', fixture('pipelines/sd15_tiny/unet'), '--inputs', f, '--output', path.join(tmp, 'x.safetensors'), '--backend', 'wasm'))
    .rejects.toMatchObject({ stderr: expect.stringMatching(/needs an input tensor named "timestep"/) });
}, 60_000);

test('tokenize prints the ids', async () => {
  const { stdout } = await tgate('tokenize', path.join(ROOT, 'assets/tiny-shapes/tokenizer'), 'a large red circle on the left');
  const row = JSON.parse(stdout.trim().split('\n')[0]);
  expect(row.input_ids.slice(0, 9)).toEqual([577, 320, 556, 568, 542, 559, 573, 557, 578]);
  expect(row.input_ids).toHaveLength(77);
});

test('generate writes a PNG with the bundled demo model, with and without TGATE', async () => {
  for (const extra of [[], ['--gate-step', '5']]) {
    const out = path.join(tmp, `img${extra.length}.png`);
    const { stdout } = await tgate('generate', '--prompt', 'a red circle on the left', '--steps', '8', '--seed', '1', '--backend', 'wasm', '--output', out, ...extra);
    expect(stdout).toContain(`wrote ${out}`);
    const img = await decodePNG(readFileSync(out));
    expect([img.width, img.height]).toEqual([64, 64]);
  }
}, 180_000);

test('generate rejects a gate beyond the step count before loading anything heavy', async () => {
  await expect(tgate('generate', '--prompt', 'a red circle', '--steps', '5', '--gate-step', '9', '--backend', 'wasm', '--output', path.join(tmp, 'no.png')))
    .rejects.toMatchObject({ stderr: expect.stringMatching(/--gate-step 9 is beyond the 5 inference steps/) });
  expect(existsSync(path.join(tmp, 'no.png'))).toBe(false);
}, 60_000);

test('--weight-dtype float16 off WebGPU is refused naming the flag, before any image is written', async () => {
  await expect(tgate('generate', '--prompt', 'a red circle', '--steps', '2', '--weight-dtype', 'float16', '--backend', 'wasm', '--output', path.join(tmp, 'f16.png')))
    .rejects.toMatchObject({ stderr: expect.stringMatching(/--weight-dtype float16.*only WebGPU's kernels read.*active backend is wasm/) });
  expect(existsSync(path.join(tmp, 'f16.png'))).toBe(false);
}, 60_000);
