/**
 * One ControlNet + LoRA session on the backend now running, the same in Node and in a page (bundled by
 * test/browser-lora-controlnet-page.ts): the SD pipeline loaded with its ControlNet, generations with the
 * ring control image before the LoRA, with it unfused, fused, fused with TGATE and fused at conditioning
 * scale 0 (the ControlNet's residuals zeroed), then the LoRA unloaded and the pipeline disposed. Returns every
 * run's latents and the tensors left over.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadPipeline } from '../../src/pipelines/load.js';
import { StableDiffusionPipeline } from '../../src/pipelines/stable-diffusion.js';
import type { SDGenerateOptions } from '../../src/pipelines/stable-diffusion.js';
import type { RGBImage } from '../../src/io/png.js';
import type { TgateOptions } from '../../src/attention/tgate.js';
import type { LoraInfo } from '../../src/lora/lora-set.js';

/** Where the three come from: paths in Node, URLs in the page. */
export interface LoraControlnetSources { pipeline: string; controlnet: string; lora: string }

export interface LoraControlnetSettings { prompt: string; seed: number; steps: number; size: number; loraScale: number; tgate: TgateOptions }

export const RUNS = ['base', 'loraUnfused', 'lora', 'loraTgate', 'loraNoControl'] as const;
export type RunName = (typeof RUNS)[number];

export interface LoraControlnetResult {
  /** The final latents of each run, flattened (NCHW). */
  latents: Record<RunName, number[]>;
  /** The LoRA as the pipeline listed it after fusing. */
  lora: LoraInfo;
  /** Tensors left by the generations and the LoRA (pipeline still loaded), and by the whole session. */
  leaked: { runs: number; session: number };
}

/** A white ring on black, `size`² (a control image any edge or scribble ControlNet might see). */
export function ringImage(size: number): RGBImage {
  const data = new Uint8Array(size * size * 3);
  const c = (size - 1) / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const r = Math.hypot(x - c, y - c) / size;
      if (r > 0.25 && r < 0.33) data.fill(255, (y * size + x) * 3, (y * size + x) * 3 + 3);
    }
  }
  return { width: size, height: size, data };
}

export async function loraControlnetRun(src: LoraControlnetSources, s: LoraControlnetSettings): Promise<LoraControlnetResult> {
  const session = tf.memory().numTensors;
  const pipe = await loadPipeline(src.pipeline, { controlnet: src.controlnet });
  let done: Omit<LoraControlnetResult, 'leaked'> & { runs: number };
  try {
    if (!(pipe instanceof StableDiffusionPipeline)) throw new Error(`${src.pipeline} is not a Stable Diffusion pipeline`);
    const loaded = tf.memory().numTensors;
    const controlImage = ringImage(s.size);
    const run = async (o: Partial<SDGenerateOptions> = {}): Promise<number[]> => {
      const { latents } = await pipe.generate({
        prompt: s.prompt, seed: s.seed, numInferenceSteps: s.steps, guidanceScale: 7.5, height: s.size, width: s.size,
        controlImage, outputType: 'latent', ...o,
      });
      const v = Array.from(await latents.data());
      latents.dispose();
      return v;
    };
    const base = await run();
    await pipe.loadLora(src.lora, { scale: s.loraScale });
    const loraUnfused = await run();
    await pipe.fuseLora();
    const lora = await run();
    const loraTgate = await run({ tgate: s.tgate });
    const loraNoControl = await run({ controlnetConditioningScale: 0 });
    const info = pipe.listLoras()[0]!;
    await pipe.unloadLora();
    done = { latents: { base, loraUnfused, lora, loraTgate, loraNoControl }, lora: info, runs: tf.memory().numTensors - loaded };
  } finally {
    pipe.dispose();
  }
  return { latents: done.latents, lora: done.lora, leaked: { runs: done.runs, session: tf.memory().numTensors - session } };
}
