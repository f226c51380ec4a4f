/**
 * float16 weights on WebGPU (nn/packed-weight.ts, src/backends/webgpu/half-kernels.ts), run in the WebGPU
 * child (test/webgpu-child.ts):
 * - each kernel against the plain float32 ops given the same half-rounded weights (./half-kernels-check.ts);
 * - the tiny-shapes pipeline and the fixture models with float16 weights against the same with float32 ones,
 *   and both against diffusers' goldens; `tf.memory().numBytes` of the weights either way;
 * - a converted `--quantize float16` folder, whose halves are uploaded as stored.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadPipeline } from '../src/pipelines/load.js';
import { loadModel } from '../src/models/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { Module } from '../src/nn/module.js';
import { halfKernelChecks } from './half-kernels-check.js';
import { TfjsWeightSource } from '../src/io/tfjs-weight-source.js';
import { readConfig } from '../src/io/component-source.js';
import { modelFromConfig } from '../src/models/registry.js';
import type { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import type { PixArtTransformer2DModel } from '../src/models/pixart-transformer.js';
import type { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import type { CLIPTextModel } from '../src/models/clip-text.js';
import type { T5EncoderModel } from '../src/models/t5-encoder.js';
import { convertPipeline } from '../src/convert/convert.js';
import { fixture, loadFixture, relL2 } from './support/helpers.js';

export interface ModelCase { name: string; relL2: number; goldenF32: number; goldenF16: number; bytes32: number; bytes16: number; expected16: number }

/** Bytes the loaded weights add to tf.memory(), and what was loaded. */
async function loaded<M>(load: () => Promise<M>): Promise<[M, number]> {
  const before = tf.memory().numBytes;
  const m = await load();
  return [m, tf.memory().numBytes - before];
}

/** Bytes `m`'s weights take with float16 where its layers read halves (what numBytes must show). */
function expectedHalfBytes(m: Module): number {
  let b = 0;
  for (const [, p] of m.namedParameters()) b += p.packing.halves ? 2 * Math.ceil(p.size / 2) * 2 : p.size * 4;
  return b;
}

type Forward = (m: Module, g: Record<string, tf.Tensor>) => tf.Tensor;
const unet = (sdxl: boolean): Forward => (m, g) => (m as UNet2DConditionModel).forward({
  sample: g['in.sample']!, timestep: 500, encoderHiddenStates: g['in.encoder_hidden_states']!,
  ...(sdxl ? { textEmbeds: g['in.text_embeds'], timeIds: g['in.time_ids'] } : {}),
});
const MODELS: { name: string; dir: string; golden: string; out: string; variant?: string; forward: Forward }[] = [
  { name: 'SD-1.5 UNet', dir: 'pipelines/sd15_tiny/unet', golden: 'sd15_tiny_unet_forward', out: 'out_t500', forward: unet(false) },
  { name: 'SD-2.1 UNet', dir: 'models/sd21_tiny_unet', golden: 'sd21_tiny_unet_forward', out: 'out_t500', forward: unet(false) },
  { name: 'SDXL UNet', dir: 'pipelines/sdxl_tiny/unet', golden: 'sdxl_tiny_unet_forward', out: 'out_t500', forward: unet(true) },
  { name: 'SD-1.5 UNet from fp16 weights', dir: 'models/sd15_tiny_unet_fp16', variant: 'fp16', golden: 'sd15_tiny_unet_fp16weights_forward', out: 'out_t500', forward: unet(false) },
  {
    name: 'PixArt transformer, masked', dir: 'pipelines/pixart_tiny/transformer', golden: 'pixart_tiny_ac_forward', out: 'out',
    forward: (m, g) => (m as PixArtTransformer2DModel).forward({
      hiddenStates: g['in.hidden_states']!, timestep: g['in.timestep']!, encoderHiddenStates: g['in.encoder_hidden_states']!,
      encoderAttentionMask: g['in.encoder_attention_mask']!, resolution: g['in.resolution']!, aspectRatio: g['in.aspect_ratio']!,
    }),
  },
  { name: 'VAE decoder', dir: 'pipelines/sd15_tiny/vae', golden: 'vae_tiny_forward', out: 'decode', forward: (m, g) => (m as AutoencoderKL).decode(g['in.z']!) },
  {
    name: 'CLIP text encoder', dir: 'pipelines/sd15_tiny/text_encoder', golden: 'clip_tiny_sd15_forward', out: 'last_hidden_state',
    forward: (m, g) => { const o = (m as CLIPTextModel).forward({ inputIds: g['in.input_ids']! }); tf.dispose([...o.hiddenStates, o.pooledOutput!]); return o.lastHiddenState; },
  },
  {
    name: 'T5 encoder, masked', dir: 'pipelines/pixart_tiny/text_encoder', golden: 't5_tiny_forward', out: 'last_hidden_state',
    forward: (m, g) => (m as T5EncoderModel).forward({ inputIds: g['in.input_ids']!, attentionMask: g['in.attention_mask']! }).lastHiddenState,
  },
];

async function modelChecks(): Promise<ModelCase[]> {
  const out: ModelCase[] = [];
  for (const c of MODELS) {
    const outputs: Float32Array[] = [];
    const bytes: number[] = [];
    let golden: Float32Array | null = null;
    let expected16 = 0;
    for (const weightDtype of ['float32', 'float16'] as const) {
      // Fresh inputs per run: tensors the model reads back (ids, timesteps) must still be CPU-resident.
      const g = await loadFixture(`goldens/${c.golden}.safetensors`);
      const [m, b] = await loaded(() => loadModel(fixture(c.dir), { variant: c.variant, weightDtype }));
      try {
        const y = c.forward(m, g);
        outputs.push((await y.data()) as Float32Array);
        golden ??= (await g[c.out]!.data()) as Float32Array;
        y.dispose();
        bytes.push(b);
        if (weightDtype === 'float16') expected16 = expectedHalfBytes(m);
      } finally {
        m.dispose();
        tf.dispose(Object.values(g));
      }
    }
    out.push({
      name: c.name, relL2: relL2(outputs[1]!, outputs[0]!), goldenF32: relL2(outputs[0]!, golden!), goldenF16: relL2(outputs[1]!, golden!),
      bytes32: bytes[0]!, bytes16: bytes[1]!, expected16,
    });
  }
  return out;
}

const CALL = { prompt: 'a small red circle on the left', seed: 1234, numInferenceSteps: 3, guidanceScale: 7.5, height: 64, width: 64 } as const;

export interface PipelineCase { latents: number; image: number; bytes32: number; bytes16: number }

async function pipelineRun(dir: string, weightDtype: 'float32' | 'float16'): Promise<{ latents: Float32Array; image: Uint8Array; bytes: number }> {
  const [pipe, bytes] = await loaded(() => loadPipeline(dir, { weightDtype }) as Promise<StableDiffusionPipeline>);
  try {
    const r = await pipe.generate(CALL);
    const latents = (await r.latents.data()) as Float32Array;
    r.latents.dispose();
    return { latents, image: r.images[0]!.data, bytes };
  } finally {
    pipe.dispose();
  }
}

async function pipelineCheck(dir: string): Promise<PipelineCase> {
  const a = await pipelineRun(dir, 'float32');
  const b = await pipelineRun(dir, 'float16');
  return { latents: relL2(b.latents, a.latents), image: relL2(b.image, a.image), bytes32: a.bytes, bytes16: b.bytes };
}

export interface FolderCase extends PipelineCase {
  /** Tensors read as stored halves, and the float16 parameters they filled. */
  halvesRead: number;
  halfParams: number;
}

/** The asset converted with --quantize float16: float16 weights take its halves as stored. */
async function folderCheck(asset: string): Promise<FolderCase> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'tgate-f16-'));
  const dir = path.join(tmp, 'tiny-shapes-f16');
  const proto = TfjsWeightSource.prototype;
  const readHalves = proto.readHalves;
  let halvesRead = 0;
  proto.readHalves = async function (this: TfjsWeightSource, key: string) {
    const h = await readHalves.call(this, key);
    if (h) halvesRead++;
    return h;
  };
  try {
    await convertPipeline(asset, dir, { quantize: 'float16' });
    const r = await pipelineCheck(dir);
    let halfParams = 0;
    for (const sub of ['unet', 'vae', 'text_encoder']) {
      for (const [, p] of modelFromConfig(await readConfig(path.join(dir, sub))).namedParameters()) if (p.packing.halves) halfParams++;
    }
    return { ...r, halvesRead, halfParams };
  } finally {
    proto.readHalves = readHalves;
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface HalfReport {
  kernels: Awaited<ReturnType<typeof halfKernelChecks>>;
  /** The error loading with float16 weights and offload together. */
  offloadError: string;
  pipeline: PipelineCase;
  folder: FolderCase;
  models: ModelCase[];
  leaked: number;
}

export async function halfWeightCheck(asset: string): Promise<HalfReport> {
  const before = tf.memory().numTensors;
  const kernels = await halfKernelChecks();
  const offloadError = await loadPipeline(asset, { weightDtype: 'float16', offload: true }).then(
    (p) => { p.dispose(); return ''; }, (e: Error) => e.message);
  const pipeline = await pipelineCheck(asset);
  const folder = await folderCheck(asset);
  const models = await modelChecks();
  return { kernels, offloadError, pipeline, folder, models, leaked: tf.memory().numTensors - before };
}
