/**
 * `--lora FILE[:scale]` on `tgate generate` and `tgate forward`, against diffusers' recorded LoRA runs
 * (test/fixtures/ext2/lora: rank 4, alpha 8, on sd15_tiny's UNet attentions and CLIP self-attentions): the fused
 * SD generation at scale 0.8 (baseline and TGATE gate 7), the UNet and text-encoder forwards at scales 1 and 0.5,
 * one of them offloaded. Also how `FILE[:scale]` is split.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { ensureBuilt, tgate } from './support/cli.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { parseLoraArg } from '../src/cli/lora-arg.js';

const PEFT = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');
const KOHYA = fixture('ext2/models/sd15_tiny_lora/kohya_lora.safetensors');
let tmp: string;

beforeAll(async () => {
  await ensureBuilt();
  await useBackend('cpu');
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-cli-lora-'));
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('FILE[:scale] splits at the last colon only before a number: URLs and Windows paths stay whole', () => {
  expect(parseLoraArg('style.safetensors')).toEqual({ source: 'style.safetensors', scale: 1 });
  expect(parseLoraArg('style.safetensors:0.7')).toEqual({ source: 'style.safetensors', scale: 0.7 });
  expect(parseLoraArg('https://host:8080/a.safetensors')).toEqual({ source: 'https://host:8080/a.safetensors', scale: 1 });
  expect(parseLoraArg('https://host:8080/a.safetensors:-0.5')).toEqual({ source: 'https://host:8080/a.safetensors', scale: -0.5 });
  expect(parseLoraArg('C:\\loras\\ink.safetensors')).toEqual({ source: 'C:\\loras\\ink.safetensors', scale: 1 });
  expect(parseLoraArg('C:\\loras\\ink.safetensors:2')).toEqual({ source: 'C:\\loras\\ink.safetensors', scale: 2 });
  expect(parseLoraArg('odd:name.safetensors:')).toEqual({ source: 'odd:name.safetensors:', scale: 1 });
});

let ddimDir: string | undefined;

/** sd15_tiny with the DDIM scheduler config of the recorded run (ext2 README, Conventions: the public tree's SD config). */
function ddimPipeline(): string {
  const dir = path.join(tmp, 'sd15_tiny_ddim');
  mkdirSync(path.join(dir, 'scheduler'), { recursive: true });
  const base = fixture('pipelines/sd15_tiny');
  for (const c of ['unet', 'vae', 'text_encoder', 'tokenizer']) symlinkSync(path.join(base, c), path.join(dir, c), 'dir');
  const index = JSON.parse(readFileSync(path.join(base, 'model_index.json'), 'utf8'));
  index.scheduler = ['diffusers', 'DDIMScheduler'];
  writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify(index));
  const sched = readPythonJson<{ cases: Record<string, { config_passed: Record<string, unknown> }> }>(fixture('schedulers/index.json'));
  writeFileSync(path.join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify({ _class_name: 'DDIMScheduler', ...sched.cases.ddim_sd.config_passed }));
  return dir;
}

test.each([
  ['baseline', 'peft file, fused (the default)', [`${PEFT}:0.8`]],
  ['tgate_gate7', 'kohya file, --no-fuse-lora, TGATE gate 7', [`${KOHYA}:0.8`, '--no-fuse-lora', '--gate-step', '7', '--sp-interval', '5', '--fi-interval', '1', '--warm-up', '2']],
] as const)('generate --lora reproduces diffusers\' %s run (%s)', async (run, _what, lora) => {
  const g = await loadFixture(`ext2/lora/sd15_tiny_lora0.8_ddim_${run}.safetensors`);
  const latentsIn = path.join(tmp, 'latents.safetensors');
  writeFileSync(latentsIn, encodeSafetensors({ latents: g['in.latents'] }));
  const out = path.join(tmp, `lora-${run}.safetensors`);
  const { stderr } = await tgate('generate', ddimDir ??= ddimPipeline(), '--prompt', 'a photo of a cat', '--latents', latentsIn,
    '--steps', '10', '--guidance', '7.5', '--height', '64', '--width', '64', '--output-type', 'latent', '--backend', 'wasm', '--output', out, '--lora', ...lora);
  expect(stderr).toMatch(/LoRA .* at scale 0\.8: .*48 unet layers/);
  expect(stderr).toMatch(/LoRA .* at scale 0\.8: .*12 text_encoder layers/);
  const got = await loadFixture(path.relative(fixture(), out));
  const e = relL2T(got.latents, g.final_latents);
  console.log(`cli generate --lora (${run}): final latents rel-L2 ${e.toExponential(2)}`);
  expect(e).toBeLessThanOrEqual(1e-4);
  tf.dispose([...Object.values(g), ...Object.values(got)]);
}, 180_000);

/** `tgate forward` on cpu with `extra` flags; each output against `want`. */
async function forward(dir: string, inputs: Record<string, tf.Tensor>, want: Record<string, tf.Tensor>, extra: string[]): Promise<number> {
  const inFile = path.join(tmp, `in-${path.basename(dir)}.safetensors`);
  const outFile = path.join(tmp, 'out.safetensors');
  writeFileSync(inFile, encodeSafetensors(inputs, undefined, { int64: true }));
  await tgate('forward', dir, '--inputs', inFile, '--output', outFile, '--backend', 'cpu', ...extra);
  const out = await loadFixture(path.relative(fixture(), outFile));
  const worst = Math.max(...Object.entries(want).map(([k, ref]) => relL2T(out[k], ref)));
  tf.dispose(Object.values(out));
  return worst;
}

describe('forward --lora fuses the component\'s keys (prefix from its class)', () => {
  let g: Record<string, tf.Tensor>;
  beforeAll(async () => { g = await loadFixture('ext2/lora/forward.safetensors'); });
  afterAll(() => tf.dispose(Object.values(g)));
  const unetIn = () => ({ sample: g['in.sample'], timestep: g['in.timestep'], encoder_hidden_states: g['in.encoder_hidden_states'] });

  test.each([
    ['UNet, kohya file at scale 1', 'unet', [KOHYA], '1.0'],
    ['UNet offloaded, peft file at 0.5', 'unet', [`${PEFT}:0.5`, '--offload'], '0.5'],
    ['CLIP text encoder, peft file at 0.5', 'text_encoder', [`${PEFT}:0.5`], '0.5'],
    ['CLIP text encoder, kohya file, --lora-prefix lora_te', 'text_encoder', [KOHYA, '--lora-prefix', 'lora_te'], '1.0'],
  ] as const)('%s', async (_name, component, lora, scale) => {
    const dir = fixture('pipelines/sd15_tiny', component);
    const e = component === 'unet'
      ? await forward(dir, unetIn(), { sample: g[`unet_out.scale${scale}`] }, ['--lora', ...lora])
      : await forward(dir, { input_ids: g['in.input_ids'] },
        { last_hidden_state: g[`te_last_hidden_state.scale${scale}`], pooler_output: g[`te_pooler_output.scale${scale}`] }, ['--lora', ...lora]);
    console.log(`cli forward --lora ${_name}: rel-L2 ${e.toExponential(2)}`);
    expect(e).toBeLessThanOrEqual(1e-5);
  }, 120_000);

  test('a component with no LoRA prefix of its own needs --lora-prefix', async () => {
    const vae = await loadFixture('goldens/vae_tiny_forward.safetensors');
    await expect(forward(fixture('pipelines/sd15_tiny/vae'), { latents: vae['in.z'] }, {}, ['--lora', KOHYA]))
      .rejects.toMatchObject({ stderr: expect.stringMatching(/--lora: AutoencoderKL has no LoRA component prefix of its own; name the file's prefix with --lora-prefix/) });
    tf.dispose(Object.values(vae));
  }, 60_000);
});
