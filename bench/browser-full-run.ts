/**
 * One run of the full-size SD-1.5 pipeline folder written by bench/browser-full.ts, the same in the page
 * (bench/browser-full-page.ts, headless Chromium) and in Node (the reference): load it, encode seeded token
 * ids with its CLIP text encoder, run the denoising loop from the seed's latents, decode with the VAE.
 * Everything it returns is plain data, so it crosses `page.evaluate` unchanged. Browser-safe: no Node imports.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadPipeline } from '../src/pipelines/load.js';
import { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import type { WeightDtype } from '../src/nn/packed-weight.js';

export interface FullRunSettings {
  /** Image side in pixels (latents are size/8). */
  size: number;
  steps: number;
  guidance: number;
  /** Seed of the initial latents (the pipeline's generator) and of the prompt's token ids. */
  seed: number;
  /** Prompt tokens between BOS and EOS. */
  promptTokens: number;
  /** Weight offload (nn/offload.ts): the wasm heap cannot hold the whole pipeline in float32. */
  offload: boolean;
  weightDtype: WeightDtype;
}

/** What one run measured and produced; arrays are the values compared with the reference. */
export interface FullRunResult {
  /** loadPipeline: fetch, float16 decode, layout, upload (or copy into JS memory with offload). */
  loadSeconds: number;
  /** tf.memory() after loading and at the end of the run (before disposing). */
  memoryAfterLoad: { numTensors: number; numBytes: number };
  memoryAfterRun: { numTensors: number; numBytes: number };
  parameters: Record<string, number>;
  textSeconds: number;
  /** Wall seconds of each denoiser call (PNDM adds a warm-up call: steps + 1 calls), each synchronised by its readback. */
  callSeconds: number[];
  decodeSeconds: number;
  /** Text embeddings [2, 77, 768] (negative, prompt), each call's raw UNet output, final latents, the image (RGB bytes). */
  embeddings: number[];
  modelOutputs: number[][];
  latents: number[];
  rgb: number[];
  /** Tensors left after the pipeline is disposed, against the count before loading (0 expected). */
  leakedTensors: number;
}

/** Seeded token ids: a prompt of `n` ids between BOS and EOS, and the empty prompt, both padded with EOS to 77. */
export function tokenIds(n: number, seed: number): number[][] {
  const BOS = 49406;
  const EOS = 49407;
  let s = (seed * 2654435761) >>> 0;
  const next = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; };
  const prompt = [BOS, ...Array.from({ length: n }, () => 1 + (next() % 49405)), EOS];
  const pad = (ids: number[]): number[] => [...ids, ...new Array<number>(77 - ids.length).fill(EOS)];
  return [pad([BOS, EOS]), pad(prompt)];
}

const seconds = (t0: number): number => (performance.now() - t0) / 1000;

export interface FullRunHooks {
  /** Awaited after loading and after the run (the page measures its memory there). */
  onPhase?: (phase: 'loaded' | 'ran') => Promise<void>;
  /** A line per stage (loaded, text encoded, each denoiser call), for the log of long runs. */
  onProgress?: (line: string) => void;
}

/** Loads the pipeline at `location` (a URL in the page, a folder in Node) on the current backend and runs it. */
export async function fullRun(location: string, s: FullRunSettings, hooks: FullRunHooks = {}): Promise<FullRunResult> {
  const { onPhase, onProgress } = hooks;
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  // No tokenizer: CLIP's vocabulary cannot be fetched here, so the prompt is seeded token ids.
  const pipe = await loadPipeline(location, { skip: ['tokenizer'], offload: s.offload, weightDtype: s.weightDtype });
  const loadSeconds = seconds(t0);
  let r: FullRunResult;
  try {
    if (!(pipe instanceof StableDiffusionPipeline)) throw new Error(`${location} is not a Stable Diffusion pipeline`);
    const memoryAfterLoad = { numTensors: tf.memory().numTensors, numBytes: tf.memory().numBytes };
    onProgress?.(`loaded in ${loadSeconds.toFixed(1)} s (${memoryAfterLoad.numTensors} tensors, ${(memoryAfterLoad.numBytes / 2 ** 30).toFixed(2)} GiB)`);
    await onPhase?.('loaded');
    const parameters = { unet: pipe.unet.numParameters(), vae: pipe.vae.numParameters(), textEncoder: pipe.textEncoder.numParameters() };

    const t1 = performance.now();
    const states = tf.tidy(() => pipe.textEncoder.forward({ inputIds: tokenIds(s.promptTokens, s.seed), outputHiddenStates: false }).lastHiddenState);
    const embeddings = Array.from(await states.data());
    const textSeconds = seconds(t1);
    onProgress?.(`text encoder: ${textSeconds.toFixed(1)} s`);
    const [negative, prompt] = tf.split(states, 2, 0);
    states.dispose();

    const callSeconds: number[] = [];
    const modelOutputs: number[][] = [];
    let last = performance.now();
    const result = await pipe.generate({
      promptEmbeds: prompt, negativePromptEmbeds: negative, seed: s.seed, numInferenceSteps: s.steps, guidanceScale: s.guidance,
      height: s.size, width: s.size,
      onStep: async (info) => {
        modelOutputs.push(Array.from(await info.modelOutput.data()));
        callSeconds.push(seconds(last));
        onProgress?.(`denoiser call ${callSeconds.length}/${info.numSteps} (t=${info.timestep}, batch ${info.batch}): ${callSeconds.at(-1)!.toFixed(1)} s`);
        last = performance.now();
      },
    });
    const decodeSeconds = seconds(last);
    onProgress?.(`VAE decode: ${decodeSeconds.toFixed(1)} s`);
    tf.dispose([negative, prompt]);
    const latents = Array.from(await result.latents.data());
    result.latents.dispose();
    const memoryAfterRun = { numTensors: tf.memory().numTensors, numBytes: tf.memory().numBytes };
    await onPhase?.('ran');
    r = {
      loadSeconds, memoryAfterLoad, memoryAfterRun, parameters, textSeconds, callSeconds, decodeSeconds,
      embeddings, modelOutputs, latents, rgb: Array.from(result.images[0]!.data), leakedTensors: NaN,
    };
  } finally {
    pipe.dispose();
  }
  r.leakedTensors = tf.memory().numTensors - before;
  return r;
}
