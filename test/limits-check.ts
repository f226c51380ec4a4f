/**
 * The binding-limit split, checked on the current backend (shared by limits.test.ts on wasm and by
 * webgpu-child.ts on Dawn): with a lowered limit the attention score matrix no longer fits, the split path
 * runs, and the result matches the unsplit one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { scaledDotProductAttention } from '../src/attention/sdpa.js';
import { bufferLimitBytes, deviceLimits, limitStats, setBufferLimit } from '../src/backends/index.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import { Rng } from '../src/samplers/index.js';
import { relL2 } from './support/helpers.js';

export interface SplitReport {
  backend: string;
  deviceLimit: number | null;
  deviceLimits: ReturnType<typeof deviceLimits>;
  /** sdpa on [2, 256, 64] × 4 heads: a 2 MiB score matrix against a 64 KiB limit. */
  sdpa: { scoreBytes: number; limit: number; splits: number; relL2: number };
  /** One pipeline step (UNet with TGATE + VAE attention) under a 16 KiB limit vs none. */
  pipeline?: { splits: number; relL2: number };
  /** The error when not even one query row fits. */
  rowError: string;
}

export async function splitCheck(asset?: string): Promise<SplitReport> {
  setBufferLimit(null);
  const deviceLimit = bufferLimitBytes();
  const rng = new Rng(3);
  const [q, k, v] = [0, 1, 2].map(() => rng.randn([2, 256, 64]));
  const opts = { heads: 4, scale: 1 / Math.sqrt(16) };
  try {
    const full = scaledDotProductAttention(q!, k!, v!, opts);
    const fullData = await full.data();
    const limit = 64 * 1024;
    setBufferLimit(limit);
    const before = limitStats.attentionSplits;
    const split = scaledDotProductAttention(q!, k!, v!, opts);
    const splits = limitStats.attentionSplits - before;
    const sdpa = { scoreBytes: 2 * 4 * 256 * 256 * 4, limit, splits, relL2: relL2(await split.data(), fullData) };
    tf.dispose([full, split]);

    setBufferLimit(1024);
    let rowError = '';
    try { scaledDotProductAttention(q!, k!, v!, opts).dispose(); } catch (e) { rowError = (e as Error).message; }

    let pipeline: SplitReport['pipeline'];
    if (asset) {
      const pipe = (await loadPipeline(asset)) as StableDiffusionPipeline;
      const call = { prompt: 'a large green triangle at the top', seed: 5, numInferenceSteps: 2, guidanceScale: 7.5, tgate: { gateStep: 1, warmUp: 0 } };
      setBufferLimit(null);
      const a = await pipe.generate(call);
      setBufferLimit(16 * 1024);
      const p0 = limitStats.attentionSplits;
      const b = await pipe.generate(call);
      pipeline = { splits: limitStats.attentionSplits - p0, relL2: relL2(await b.latents.data(), await a.latents.data()) };
      const img = relL2(b.images[0]!.data, a.images[0]!.data);
      pipeline.relL2 = Math.max(pipeline.relL2, img);
      tf.dispose([a.latents, b.latents]);
      pipe.dispose();
    }
    return { backend: tf.getBackend(), deviceLimit, deviceLimits: deviceLimits(), sdpa, pipeline, rowError };
  } finally {
    setBufferLimit(null);
    tf.dispose([q!, k!, v!]);
  }
}
