/**
 * The binding-limit split, checked on the current backend (shared by limits.test.ts on wasm and by
 * webgpu-child.ts on Dawn): with a lowered limit the attention score matrix no longer fits, the split path
 * of the plain ops runs, and the result matches the unsplit one. Where the backend has a fused attention
 * kernel (WebGPU), the default path runs that instead and needs no split at all.
 */
import * as tf from '@tensorflow/tfjs-core';
import { scaledDotProductAttention } from '../src/attention/sdpa.js';
import { bufferLimitBytes, deviceLimits, limitStats, setBufferLimit, setWebgpuFusedKernels } from '../src/backends/index.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import { Rng } from '../src/samplers/index.js';
import { relL2 } from './support/helpers.js';

export interface SplitReport {
  backend: string;
  deviceLimit: number | null;
  deviceLimits: ReturnType<typeof deviceLimits>;
  /**
   * sdpa on [2, 256, 64] × 4 heads: a 2 MiB score matrix against a 64 KiB limit; the plain ops split, the
   * default path (`defaultSplits`, `defaultRelL2`) runs a fused kernel where the backend has one.
   */
  sdpa: { scoreBytes: number; limit: number; splits: number; relL2: number; defaultSplits: number; defaultRelL2: number };
  /**
   * One pipeline step (UNet with TGATE + VAE attention) under a 16 KiB limit vs none, our fused kernels off
   * (the plain attention splits); then with them on (the default).
   */
  pipeline?: { splits: number; relL2: number; defaultSplits: number; defaultRelL2: number };
  /** The error when not even one query row fits (the plain ops). */
  rowError: string;
}

export async function splitCheck(asset?: string): Promise<SplitReport> {
  setBufferLimit(null);
  const deviceLimit = bufferLimitBytes();
  const rng = new Rng(3);
  const [q, k, v] = [0, 1, 2].map(() => rng.randn([2, 256, 64]));
  const opts = { heads: 4, scale: 1 / Math.sqrt(16), strategy: 'batched' as const };
  try {
    const full = scaledDotProductAttention(q!, k!, v!, opts);
    const fullData = await full.data();
    const limit = 64 * 1024;
    setBufferLimit(limit);
    const before = limitStats.attentionSplits;
    const split = scaledDotProductAttention(q!, k!, v!, opts);
    const splits = limitStats.attentionSplits - before;
    const byDefault = scaledDotProductAttention(q!, k!, v!, { ...opts, strategy: 'auto' });
    const sdpa = {
      scoreBytes: 2 * 4 * 256 * 256 * 4, limit, splits, relL2: relL2(await split.data(), fullData),
      defaultSplits: limitStats.attentionSplits - before - splits, defaultRelL2: relL2(await byDefault.data(), fullData),
    };
    tf.dispose([full, split, byDefault]);

    setBufferLimit(1024);
    let rowError = '';
    try { scaledDotProductAttention(q!, k!, v!, opts).dispose(); } catch (e) { rowError = (e as Error).message; }

    let pipeline: SplitReport['pipeline'];
    if (asset) {
      const pipe = (await loadPipeline(asset)) as StableDiffusionPipeline;
      const call = { prompt: 'a large green triangle at the top', seed: 5, numInferenceSteps: 2, guidanceScale: 7.5, tgate: { gateStep: 1, warmUp: 0 } };
      const run = async (limit: number | null, fused: boolean) => {
        setBufferLimit(limit);
        setWebgpuFusedKernels(fused);
        const p0 = limitStats.attentionSplits;
        const r = await pipe.generate(call);
        return { splits: limitStats.attentionSplits - p0, latents: await r.latents.data(), image: r.images[0]!.data, dispose: () => r.latents.dispose() };
      };
      try {
        const a = await run(null, false);
        const b = await run(16 * 1024, false);
        const c = await run(16 * 1024, true);
        const worst = (x: typeof a) => Math.max(relL2(x.latents, a.latents), relL2(x.image, a.image));
        pipeline = { splits: b.splits, relL2: worst(b), defaultSplits: c.splits, defaultRelL2: worst(c) };
        [a, b, c].forEach((x) => x.dispose());
      } finally {
        setWebgpuFusedKernels(true);
        pipe.dispose();
      }
    }
    return { backend: tf.getBackend(), deviceLimit, deviceLimits: deviceLimits(), sdpa, pipeline, rowError };
  } finally {
    setBufferLimit(null);
    tf.dispose([q!, k!, v!]);
  }
}
