/**
 * Every WebGPU binding within 128 MiB (browsers' default maxStorageBufferBindingSize), checked on the real
 * thing: SD-1.5's full architecture (CLIP ViT-L/14 text encoder, UNet, VAE decoder; seeded random weights),
 * or SDXL's (both text encoders, UNet, VAE), runs a forward at 64² on Dawn with float16 and float32 weights
 * while every bind group is counted (trackWebgpuBindings); then T5-XXL's 32128 × 4096 embedding table (526 MB
 * in float32) is read in row pieces, and a float32 weight larger than one binding is refused with its remedy.
 * Heavy (1.1 G parameters for SD-1.5, 3.5 G for SDXL; minutes on a CPU-only Mesa): not part of `npm test`.
 *
 *   EGL_PLATFORM=surfaceless DAWN_BACKEND=opengles npx tsx bench/webgpu-bindings.ts [--model sd15|sdxl]
 *     [--dtype float16|float32|both] [--size 64] [--out file.json]
 */
import * as tf from '@tensorflow/tfjs-core';
import { writeFileSync } from 'node:fs';
import { initBackend, releaseWebgpuBufferPool, trackWebgpuBindings } from '../src/backends/index.js';
import { modelFromConfig } from '../src/models/registry.js';
import type { Module } from '../src/nn/module.js';
import type { WeightDtype } from '../src/nn/packed-weight.js';
import { randomNormalHost } from '../src/nn/host-weights.js';
import { checkWeightDtype } from '../src/backends/kernels.js';
import { Embedding } from '../src/layers/embeddings.js';
import { Linear } from '../src/layers/linear.js';
import type { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import type { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import type { CLIPTextModel } from '../src/models/clip-text.js';
import { CLIP_G, CLIP_L, fixtureConfig as config } from './full-configs.js';

const LIMIT = 128 * 2 ** 20;
const argv = process.argv.slice(2);
const arg = (name: string, dflt: string): string => (argv.includes(name) ? argv[argv.indexOf(name) + 1]! : dflt);
const dtypes: WeightDtype[] = arg('--dtype', 'both') === 'both' ? ['float16', 'float32'] : [arg('--dtype', 'float16') as WeightDtype];
const size = Number(arg('--size', '64'));
const modelName = arg('--model', 'sd15');
if (modelName !== 'sd15' && modelName !== 'sdxl') throw new Error(`--model must be sd15 or sdxl, got ${modelName}`);
const outFile = arg('--out', '');

/** Seeded weights from one pool of normals (each parameter a tiled slice of it), in JS: fast at 1 G parameters. */
const POOL = randomNormalHost(1 << 22, 0.02, 1);
function fill(m: Module, salt: number): void {
  let k = salt;
  for (const [, p] of m.namedParameters()) {
    const v = new Float32Array(p.size);
    const off = (k++ * 104729) % POOL.length;
    for (let i = 0; i < v.length;) {
      const from = (off + i) % POOL.length;
      const n = Math.min(v.length - i, POOL.length - from);
      v.set(POOL.subarray(from, from + n), i);
      i += n;
    }
    p.assign(v);
  }
}

function setWeightDtype(m: Module, dtype: WeightDtype): void {
  checkWeightDtype(dtype);
  m.setWeightDtype(dtype);
}

function build(cfg: Record<string, unknown>, dtype: WeightDtype, salt: number): { m: Module; bytes: number; params: number } {
  const before = tf.memory().numBytes;
  const m = modelFromConfig(cfg);
  setWeightDtype(m, dtype);
  fill(m, salt);
  return { m, bytes: tf.memory().numBytes - before, params: m.numParameters() };
}

const finite = async (t: tf.Tensor): Promise<boolean> => (await t.data()).every(Number.isFinite);
const seconds = (t0: number): number => +((performance.now() - t0) / 1000).toFixed(1);

/** Text encoder(s), UNet and VAE decoder of `modelName` at `size`², batch 2, every bind group counted. */
async function fullModel(dtype: WeightDtype): Promise<Record<string, unknown>> {
  const xl = modelName === 'sdxl';
  const t0 = performance.now();
  const encoders = [build(CLIP_L, dtype, 0), ...(xl ? [build(CLIP_G, dtype, 500)] : [])];
  const unet = build(config(xl ? 'sdxl_unet.json' : 'sd15_unet.json'), dtype, 1000);
  const vae = build(config('sd_vae.json'), dtype, 2000);
  const built = seconds(t0);
  const stats = trackWebgpuBindings(true, LIMIT)!;
  const t1 = performance.now();
  const ids = [Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i >= 9 ? 49407 : 320 + 37 * i)), Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : 49407))];
  const texts = encoders.map((e) => (e.m as CLIPTextModel).forward({ inputIds: ids }));
  // SDXL: penultimate hidden states of both encoders side by side, the second's projection as the pooled embedding.
  const states = xl
    ? tf.concat(texts.map((t) => t.hiddenStates[t.hiddenStates.length - 2]!), 2)
    : texts[0]!.lastHiddenState;
  const lat = size / 8;
  const eps = (unet.m as UNet2DConditionModel).forward({
    sample: tf.randomNormal([2, 4, lat, lat], 0, 1, 'float32', 3), timestep: 500, encoderHiddenStates: states,
    ...(xl ? { textEmbeds: texts[1]!.textEmbeds!, timeIds: tf.tensor2d([[size, size, 0, 0, size, size], [size, size, 0, 0, size, size]]) } : {}),
  });
  const image = (vae.m as AutoencoderKL).decode(tf.tidy(() => eps.slice([0, 0, 0, 0], [1, -1, -1, -1]).div(0.18215)));
  const ok = (await finite(states)) && (await finite(eps)) && (await finite(image));
  const ran = seconds(t1);
  trackWebgpuBindings(false);
  tf.dispose([...texts.flatMap((t) => [t.lastHiddenState, ...t.hiddenStates, ...(t.pooledOutput ? [t.pooledOutput] : []), ...(t.textEmbeds ? [t.textEmbeds] : [])]), states, eps, image]);
  const parts = [...encoders, unet, vae];
  const named = Object.fromEntries(parts.map((x, i) => [['textEncoder', ...(xl ? ['textEncoder2'] : []), 'unet', 'vae'][i]!, x.bytes]));
  const weightBytes = { ...named, total: parts.reduce((a, x) => a + x.bytes, 0) };
  const params = parts.reduce((a, x) => a + x.params, 0);
  parts.forEach((x) => x.m.dispose());
  releaseWebgpuBufferPool();
  return {
    model: modelName, dtype, size, params, weightBytes, bytesPerParam: +(weightBytes.total / params).toFixed(4), finite: ok,
    bindGroups: stats.bindGroups, largestBinding: stats.largest, largestProgram: stats.largestProgram, over128MiB: stats.over,
    buildSeconds: built, forwardSeconds: ran,
  };
}

/** T5-XXL's table: the rows read from its pieces equal the values written, and no binding exceeds 128 MiB. */
async function t5Table(dtype: WeightDtype): Promise<Record<string, unknown>> {
  const table = new Embedding(32128, 4096);
  setWeightDtype(table, dtype);
  fill(table, 3000);
  const ids = [0, 1, 8191, 8192, 16383, 16384, 24575, 24576, 32127, 12345];
  const stats = trackWebgpuBindings(true, LIMIT)!;
  const rows = table.forward(tf.tensor1d(ids, 'int32'));
  const got = (await rows.data()) as Float32Array;
  trackWebgpuBindings(false);
  // The expected rows, as the pool gave them (rounded to halves for float16: compared with a half's precision).
  const off = (3000 * 104729) % POOL.length;
  let worst = 0;
  ids.forEach((id, r) => {
    for (let j = 0; j < 4096; j++) {
      const want = POOL[(off + id * 4096 + j) % POOL.length]!;
      worst = Math.max(worst, Math.abs(got[r * 4096 + j]! - want) / Math.max(Math.abs(want), 6.1e-5));
    }
  });
  const pieces = table.weight.stored.pieces.length;
  rows.dispose();
  table.dispose();
  return { dtype, tableBytes: 32128 * 4096 * (dtype === 'float16' ? 2 : 4), pieces, worstRelativeError: worst, largestBinding: stats.largest, over128MiB: stats.over.length };
}

/** A float32 Linear past the device's binding limit is refused with the remedy; as float16 it runs. */
async function oversized(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const dtype of ['float32', 'float16'] as WeightDtype[]) {
    const lin = new Linear(4096, 8200);
    setWeightDtype(lin, dtype);
    fill(lin, 4000);
    try {
      const y = lin.forward(tf.ones([1, 4096]));
      out[dtype] = (await finite(y)) ? 'ran' : 'non-finite output';
      y.dispose();
    } catch (e) {
      out[dtype] = (e as Error).message;
    }
    lin.dispose();
  }
  return out;
}

const report = await initBackend('webgpu', { quiet: true });
const result: Record<string, unknown> = { device: report.details, limit: LIMIT, models: [], t5Table: [] };
for (const dtype of dtypes) {
  const r = await fullModel(dtype);
  (result.models as unknown[]).push(r);
  console.log(JSON.stringify(r));
}
for (const dtype of ['float32', 'float16'] as WeightDtype[]) {
  const r = await t5Table(dtype);
  (result.t5Table as unknown[]).push(r);
  console.log(JSON.stringify(r));
}
result.oversizedLinear = await oversized();
console.log(JSON.stringify(result.oversizedLinear));
if (outFile) writeFileSync(outFile, JSON.stringify(result, null, 1));
process.exit(0);
