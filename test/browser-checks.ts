/**
 * The WebGPU checks that run inside a page, bundled by browser.test.ts for headless Chromium (SwiftShader):
 * `window.tgateChecks` runs the fused-attention check, the float16-kernel check and generations from
 * converted pipelines served over HTTP, with float32 or float16 weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backends/index.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { WeightDtype } from '../src/nn/packed-weight.js';
import { fusedAttentionCheck } from './webgpu-attention-check.js';
import { halfKernelChecks } from './half-kernels-check.js';

export interface GenerateCall { prompt: string; seed: number; steps: number; size: number }

const checks = {
  hasWebGPU: async (): Promise<boolean> => !!(await (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu?.requestAdapter()),
  attention: async () => {
    await initBackend('webgpu', { quiet: true });
    return fusedAttentionCheck();
  },
  halfKernels: async () => {
    await initBackend('webgpu', { quiet: true });
    const before = tf.memory().numTensors;
    const r = await halfKernelChecks();
    return { ...r, leaked: tf.memory().numTensors - before };
  },
  /** One generation from the pipeline at `url`; the bytes its weights add to tf.memory(). */
  generate: async (url: string, weightDtype: WeightDtype, c: GenerateCall) => {
    await initBackend('webgpu', { quiet: true });
    const before = tf.memory().numBytes;
    const pipe = await loadPipeline(url, { weightDtype });
    const weightBytes = tf.memory().numBytes - before;
    try {
      if (!(pipe instanceof StableDiffusionPipeline)) throw new Error(`${url} is not a Stable Diffusion pipeline`);
      const r = await pipe.generate({ prompt: c.prompt, seed: c.seed, numInferenceSteps: c.steps, guidanceScale: 7.5, height: c.size, width: c.size });
      const latents = Array.from(await r.latents.data());
      r.latents.dispose();
      return { weightBytes, latents, rgb: Array.from(r.images[0]!.data) };
    } finally {
      pipe.dispose();
    }
  },
};

export type BrowserChecks = typeof checks;
(window as unknown as { tgateChecks: BrowserChecks }).tgateChecks = checks;
