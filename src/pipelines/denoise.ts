/**
 * The denoising loop shared by every pipeline: classifier-free guidance, the TGATE schedule (flags per
 * step, guidance dropped from the gate on), scheduler steps, progress. Pipelines supply only how to run
 * their denoiser on a batch ("cfg" = [uncond, cond], or a single branch).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Scheduler } from '../samplers/index.js';
import type { NoiseSource } from '../samplers/torch-generator.js';
import { TGATE_IDLE, tgateFlags, type ResolvedTgate, type TgateContext, type TgateFlags } from '../attention/tgate.js';

/** Which conditioning a denoiser call gets: both halves for guidance, or one branch alone. */
export type Branch = 'cfg' | 'uncond' | 'cond';

/** Where a denoiser call sits: the index of its timestep in the scheduler's list, and TGATE's step count. */
export interface DenoiserCall {
  /**
   * First index of the call's timestep in `scheduler.timesteps` (DeepCache's count, `timesteps.index(t)`: PLMS
   * runs one timestep twice, and both calls get the first index).
   */
  index: number;
  /** The step TGATE counts: the loop index less the scheduler's warm-up calls (negative during them). */
  tgateStep: number;
}

/** Progress of a generation: `completed` of `total` denoising steps, then of images decoded. */
export interface GenerationProgress {
  phase: 'denoise' | 'decode';
  completed: number;
  total: number;
}

export interface StepInfo {
  /** Step index among the steps that run (0-based; img2img starts later in the schedule) and its timestep. */
  step: number;
  timestep: number;
  /** Denoiser calls of this run (the steps that run, and PNDM's warm-up calls). */
  numSteps: number;
  /** Latents after this step (NCHW; owned by the loop: clone to keep). */
  latents: tf.Tensor;
  /** Batch the denoiser ran with: 2 × images with guidance, images alone after the TGATE gate or without guidance. */
  batch: number;
  /** The raw denoiser output of this step (owned by the loop: clone to keep). */
  modelOutput: tf.Tensor;
  /** TGATE flags used at this step, when TGATE is on. */
  tgate?: TgateFlags;
  /** The TGATE gate, once known (with gateStep 'auto': from the step that caches on). */
  gateStep?: number;
}

export interface DenoiseArgs {
  scheduler: Scheduler;
  /** Initial latents, already multiplied by the scheduler's initNoiseSigma. Consumed (disposed). */
  latents: tf.Tensor;
  /** Index in `scheduler.timesteps` of the first step (img2img, inpainting); 0 by default. */
  begin?: number;
  /** Steps that run (diffusers' num_inference_steps after img2img's strength cut). */
  numInferenceSteps: number;
  guidanceScale: number;
  doCfg: boolean;
  guidanceRescale?: number;
  tgate?: ResolvedTgate | null;
  /**
   * Runs the denoiser on `input` (batch 2 for 'cfg') and returns the noise prediction for the latents' channels.
   * `step` is the loop index among `numSteps` denoiser calls (what diffusers' ControlNet pipelines count their
   * guidance start/end in).
   */
  denoise(input: tf.Tensor, t: number, branch: Branch, ctx: TgateContext, step: number, numSteps: number): tf.Tensor;
  /** Called before each denoiser call (DeepCache decides full/partial steps here). */
  beforeStep?(step: number, at: DenoiserCall): void;
  eta?: number;
  generator?: NoiseSource;
  /** Recorded scheduler noise to inject at a step (replays diffusers runs exactly). */
  stepNoise?(step: number): tf.Tensor | undefined;
  onStep?(info: StepInfo): void | Promise<void>;
  onProgress?(p: GenerationProgress): void | Promise<void>;
  /** Channels appended to the scaled latents of each row (the inpainting UNet's mask and masked-image latents). */
  extraChannels?: tf.Tensor;
  /** After step i: the latents to go on with (4-channel inpainting blends the image back in); may return its input. */
  afterStep?(i: number, latents: tf.Tensor): tf.Tensor;
}

/** diffusers `rescale_noise_cfg` (arXiv 2305.08891 §3.4), with torch's unbiased std. */
export function rescaleNoiseCfg(cfg: tf.Tensor, text: tf.Tensor, rescale: number): tf.Tensor {
  return tf.tidy(() => {
    const axes = cfg.shape.map((_, i) => i).slice(1);
    const n = cfg.size / cfg.shape[0];
    const std = (x: tf.Tensor) => tf.sqrt(tf.div(tf.sum(tf.square(tf.sub(x, tf.mean(x, axes, true))), axes, true), n - 1));
    const rescaled = tf.mul(cfg, tf.div(std(text), std(cfg)));
    return tf.add(tf.mul(rescaled, rescale), tf.mul(cfg, 1 - rescale));
  });
}

/** Runs the loop; returns the final latents (caller owns them). */
export async function denoiseLoop(a: DenoiseArgs): Promise<tf.Tensor> {
  const s = a.scheduler;
  const timesteps = s.timesteps.slice(a.begin ?? 0);
  const order = s.order;
  // Schedulers such as PLMS run extra warm-up timesteps; TGATE counts steps after them (T-GATE SD.py).
  const numWarmup = Math.max(0, timesteps.length - a.numInferenceSteps * order);
  let flags: TgateFlags = TGATE_IDLE;
  let latents = a.latents;
  // gateStep 'auto': the gate stays open (Infinity) until the controller, asked before each step, names that
  // step as the cache step; flags before gate − 1 do not depend on the gate, so deciding late is exact.
  let tg = a.tgate ?? null;
  const auto = tg?.auto?.controller;
  try {
    if (tg?.auto && !auto) throw new Error("tgate.gateStep 'auto' needs the TGATE session's gate controller (use beginTgate)");
    if (auto && a.beforeStep) throw new Error("tgate.gateStep 'auto' cannot be combined with DeepCache yet (its cache resets need the gate in advance)");
    for (let i = 0; i < timesteps.length; i++) await step(i);
  } catch (e) {
    latents.dispose(); // a failing step (or onStep callback) must not leak the loop's latents
    s.reset();
    throw e;
  }
  // Multistep history belongs to this run only.
  s.reset();
  return latents;

  async function step(i: number): Promise<void> {
    const t = timesteps[i];
    const cur = i - numWarmup;
    const update = i === timesteps.length - 1 || (i + 1 > numWarmup && (i + 1) % order === 0);
    if (tg && auto && update && tg.gateStep === Infinity && cur >= 0 && auto.isCacheStep(cur)) tg = { ...tg, gateStep: cur + 1 };
    const cfgNow = a.doCfg && (!tg || cur < tg.gateStep);
    if (tg && update) flags = tgateFlags(cur, tg);
    const ctx: TgateContext = { step: i, tgate: tg ? flags : undefined };
    a.beforeStep?.(i, { index: s.timesteps.indexOf(t), tgateStep: cur });
    const branch: Branch = cfgNow ? 'cfg' : a.doCfg ? 'uncond' : 'cond';
    const modelOutput = tf.tidy(() => {
      const doubled = cfgNow ? tf.concat([latents, latents], 0) : latents;
      let input = s.scaleModelInput(doubled, t);
      const extra = a.extraChannels;
      if (extra) input = tf.concat([input, cfgNow ? tf.concat([extra, extra], 0) : extra], 1);
      return a.denoise(input, t, branch, ctx, i, timesteps.length);
    });
    const noisePred = tf.tidy(() => {
      if (!cfgNow) return modelOutput.clone();
      const [uncond, text] = tf.split(modelOutput, 2, 0);
      let pred = tf.add(uncond, tf.mul(tf.sub(text, uncond), a.guidanceScale));
      if (a.guidanceRescale && a.guidanceRescale > 0) pred = rescaleNoiseCfg(pred, text, a.guidanceRescale);
      return pred;
    });
    const noise = a.stepNoise?.(i);
    const out = s.step(noisePred, t, latents, { eta: a.eta, generator: a.generator, noise });
    noisePred.dispose();
    out.predOriginalSample?.dispose();
    if (out.denoised && out.denoised !== out.prevSample) out.denoised.dispose();
    latents.dispose();
    latents = out.prevSample;
    if (a.afterStep) {
      const next = a.afterStep(i, latents);
      if (next !== latents) {
        latents.dispose();
        latents = next;
      }
    }
    try {
      await a.onStep?.({
        step: i, timestep: t, numSteps: timesteps.length, latents, batch: modelOutput.shape[0], modelOutput,
        tgate: tg ? flags : undefined, gateStep: tg && tg.gateStep !== Infinity ? tg.gateStep : undefined,
      });
    } finally {
      modelOutput.dispose();
    }
    await a.onProgress?.({ phase: 'denoise', completed: i + 1, total: timesteps.length });
    if (auto && tg!.gateStep === Infinity && cur >= 0) await auto.afterStep(cur);
  }
}
