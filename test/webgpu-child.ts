/**
 * Runs the WebGPU (Dawn) half of cross-backend.test.ts, limits.test.ts, webgpu-kernels.test.ts and
 * lora-controlnet-webgpu.test.ts in a child process: Dawn reads
 * EGL_PLATFORM from the real environment, which jest's sandboxed `process.env` cannot set, and Dawn keeps
 * the event loop alive. Usage: node --import tsx test/webgpu-child.ts '<job JSON>' <result file>.
 * Writes { skip } when Dawn has no adapter, else { details, latents?, split?, fused?, pool?, attention?, half?, loraControlnet? }.
 */
import * as tf from '@tensorflow/tfjs-core';
import { writeFile } from 'node:fs/promises';
import { initBackend } from '../src/backends/index.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline, SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';
import { splitCheck } from './limits-check.js';
import { bufferPoolCheck, fusedKernelCheck } from './webgpu-kernels-check.js';
import { loraControlnetCheck } from './support/lora-controlnet-check.js';
import { fusedAttentionCheck } from './webgpu-attention-check.js';
import { halfWeightCheck } from './webgpu-half-check.js';

interface Job {
  asset?: string; call?: SDGenerateOptions; runs?: Record<string, SDGenerateOptions['tgate']>; split?: boolean; splitAsset?: string;
  fused?: boolean; pool?: boolean; attention?: boolean; halfAsset?: string; loraControlnet?: boolean;
}

const job = JSON.parse(process.argv[2]!) as Job;
const outFile = process.argv[3]!;
let result: Record<string, unknown>;
try {
  const r = await initBackend('webgpu', { quiet: true });
  result = { details: r.details };
} catch (e) {
  await writeFile(outFile, JSON.stringify({ skip: (e as Error).message.split('\n')[0] }));
  process.exit(0);
}
if (job.asset && job.call && job.runs) {
  const pipe = (await loadPipeline(job.asset)) as StableDiffusionPipeline;
  const latents: Record<string, number[]> = {};
  const ms: Record<string, number> = {};
  for (const [key, tgate] of Object.entries(job.runs)) {
    const t0 = performance.now();
    const r = await pipe.generate({ ...job.call, tgate, outputType: 'latent' });
    latents[key] = Array.from(await r.latents.data());
    ms[key] = performance.now() - t0;
    r.latents.dispose();
  }
  pipe.dispose();
  Object.assign(result, { latents, ms });
}
if (job.split) result.split = await splitCheck(job.splitAsset);
if (job.fused) result.fused = await fusedKernelCheck();
if (job.pool) result.pool = await bufferPoolCheck();
if (job.loraControlnet) result.loraControlnet = await loraControlnetCheck();
if (job.attention) result.attention = await fusedAttentionCheck();
if (job.halfAsset) result.half = await halfWeightCheck(job.halfAsset);
result.backend = tf.getBackend();
await writeFile(outFile, JSON.stringify(result));
process.exit(0);
