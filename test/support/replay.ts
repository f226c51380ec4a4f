/**
 * Replays a recorded diffusers run through one of our pipelines and measures it: latents after every step and
 * at the end (rel-L2), the timesteps that ran, the denoiser batch (and TGATE flags) per step, every pre-loop draw
 * of the one generator against the recorded `rng_draw.{k}`, the decoded image where recorded, and tensor leaks.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2T, useBackend } from './helpers.js';
import { schedulerFromConfig, TorchGenerator, type NoiseSource } from '../../src/samplers/index.js';
import { decodeLatents } from '../../src/pipelines/latents.js';
import type { StepInfo } from '../../src/pipelines/denoise.js';
import type { TgateFlags } from '../../src/attention/tgate.js';
import type { Pipeline } from '../../src/pipelines/load.js';

export type Tensors = Record<string, tf.Tensor>;

/** A T-GATE flag row of the fixtures' index.json files. */
export interface IndexFlag { step: number; cfg: boolean; ca_cache: boolean; ca_reuse: boolean; sa_cache: boolean; sa_reuse: boolean; keep_shape: boolean }

export interface ReplayCase {
  /** Fixture file under test/fixtures, without `.safetensors`. */
  file: string;
  /** Sampler to swap in (class and config), else the pipeline's own. */
  scheduler?: { cls: string; config: Record<string, unknown> };
  /** generate() options from the fixture's tensors (outputType 'latent' and the callbacks are added). */
  options(g: Tensors): Record<string, unknown>;
  /** The seed of the run's torch generator (its pre-loop draws are compared with `rng_draw.{k}`). */
  seed?: number;
  /** Denoiser batch per step, and T-GATE's flags per step where recorded. */
  batches: number[];
  flags?: IndexFlag[];
}

export interface ReplayResult {
  worstStep: number;
  final: number;
  /** rel-L2 of each pre-loop draw against rng_draw.{k}. */
  draws: number[];
  /** rel-L2 of our decoded image against the recorded one (`image`, or the raw decode postprocessed), when recorded. */
  decoded?: number;
  /** The per-step records (for further checks). */
  steps: { timestep: number; batch: number; tgate?: TgateFlags }[];
  /** The fixture's tensors (caller disposes). */
  g: Tensors;
}

/** A generator that records what it draws (clones; the caller disposes them). */
export function recordingGenerator(seed: number): { generator: NoiseSource; draws: tf.Tensor[] } {
  const gen = new TorchGenerator(seed);
  const draws: tf.Tensor[] = [];
  return { draws, generator: { randn: (shape) => { const t = gen.randn(shape); draws.push(tf.keep(t.clone())); return t; } } };
}

/** The recorded raw decode (`vae.decode(...).sample`, about [-1, 1]) as the [0, 1] image our pipelines return. */
export function postprocess(raw: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.clipByValue(tf.add(tf.div(raw, 2), 0.5), 0, 1));
}

export async function replay(pipe: Pipeline, c: ReplayCase): Promise<ReplayResult> {
  const g = await loadFixture(`${c.file}.safetensors`);
  const shipped = pipe.scheduler;
  if (c.scheduler) pipe.scheduler = schedulerFromConfig(c.scheduler.config, c.scheduler.cls);
  const stepLatents = tf.unstack(g.step_latents);
  const errs: number[] = [];
  const steps: ReplayResult['steps'] = [];
  const rec = recordingGenerator(c.seed ?? 0);
  try {
    const before = tf.memory().numTensors;
    const { latents } = await (pipe.generate as (o: Record<string, unknown>) => ReturnType<Pipeline['generate']>)({
      ...c.options(g), outputType: 'latent', generator: rec.generator,
      onStep: (s: StepInfo) => {
        steps.push({ timestep: s.timestep, batch: s.batch, tgate: s.tgate });
        errs.push(relL2T(s.latents, stepLatents[s.step]));
      },
    });
    const final = relL2T(latents, g.final_latents);
    let decoded: number | undefined;
    const raw = g.decoded_image ?? g.vae_decode_output;
    if (raw || g.image) {
      const ours = decodeLatents(pipe.vae, latents);
      const ref = g.image ? g.image.clone() : postprocess(raw);
      decoded = relL2T(ours, ref);
      tf.dispose([ours, ref]);
    }
    latents.dispose();
    const draws = rec.draws.map((d, k) => (g[`rng_draw.${k}`] ? relL2T(d, g[`rng_draw.${k}`]) : NaN));
    const stored = Object.keys(g).filter((k) => k.startsWith('rng_draw.')).length;
    tf.dispose(rec.draws);
    expect(tf.memory().numTensors).toBe(before);
    if (c.scheduler) pipe.scheduler.dispose();
    pipe.scheduler = shipped;
    stepLatents.forEach((t) => t.dispose());
    expect(draws.length).toBe(stored);
    expect(steps.map((s) => s.batch)).toEqual(c.batches);
    const run = Array.from(g.timesteps_run.dataSync());
    expect(steps.length).toBe(run.length);
    steps.forEach((s, i) => expect(Math.abs(s.timestep - run[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(run[i]))));
    if (c.flags) {
      expect(steps.map((s, i) => ({ step: i, ...s.tgate })))
        .toEqual(c.flags.map((f) => ({ step: f.step, caCache: f.ca_cache, caReuse: f.ca_reuse, saCache: f.sa_cache, saReuse: f.sa_reuse, keepShape: f.keep_shape })));
    }
    return { worstStep: Math.max(...errs), final, draws, decoded, steps, g };
  } catch (e) {
    if (pipe.scheduler !== shipped) { pipe.scheduler.dispose(); pipe.scheduler = shipped; }
    stepLatents.forEach((t) => t.dispose());
    tf.dispose(rec.draws);
    Object.values(g).forEach((t) => t.dispose());
    throw e;
  }
}

/**
 * Asserts a replay's figures and logs them: every step and the end ≤ `tol`, decode ≤ `tol`, and each draw ≤ 1e-6
 * (torch draws with vectorised SLEEF log/sin/cos: last-bit differences only, see test/tiny-shapes.test.ts).
 */
export function expectReplay(label: string, r: ReplayResult, tol = 1e-4): void {
  const draws = r.draws.length ? `, draws ${r.draws.map((d) => d.toExponential(1)).join('/')}` : '';
  const dec = r.decoded !== undefined ? `, decoded ${r.decoded.toExponential(2)}` : '';
  console.log(`${label}: worst step rel-L2 ${r.worstStep.toExponential(2)}, final ${r.final.toExponential(2)}${draws}${dec}`);
  expect(r.worstStep).toBeLessThanOrEqual(tol);
  expect(r.final).toBeLessThanOrEqual(tol);
  r.draws.forEach((d) => expect(d).toBeLessThanOrEqual(1e-6));
  if (r.decoded !== undefined) expect(r.decoded).toBeLessThanOrEqual(tol);
  Object.values(r.g).forEach((t) => t.dispose());
}

/**
 * A pipeline folder assembled in a temporary directory: `base`'s components (copied), `model_index.json` patched
 * with `index`, some components replaced by other folders and some files written (JSON). Returns its path; remove
 * it with `fs.rmSync(dir, { recursive: true })`.
 */
export function assemblePipeline(base: string, o: { index?: Record<string, unknown>; replace?: Record<string, string>; files?: Record<string, unknown> }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tgate-pipe-'));
  const replace = o.replace ?? {};
  for (const name of fs.readdirSync(base)) fs.cpSync(replace[name] ?? path.join(base, name), path.join(dir, name), { recursive: true });
  const index = JSON.parse(fs.readFileSync(path.join(base, 'model_index.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify({ ...index, ...o.index }));
  for (const [rel, value] of Object.entries(o.files ?? {})) fs.writeFileSync(path.join(dir, rel), JSON.stringify(value));
  return dir;
}

/** Reads a JSON file under test/fixtures. */
export function ext2Json<T = Record<string, unknown>>(rel: string): T {
  return JSON.parse(fs.readFileSync(fixture(rel), 'utf8')) as T;
}

/** Pipelines loaded once and shared by a test file's cases; `release` disposes them (between backends, at the end). */
export function pipelineCache<P extends Pipeline>(load: (key: string) => Promise<P>): { get(key: string): Promise<P>; release(): Promise<void> } {
  const pipes = new Map<string, Promise<P>>();
  return {
    get(key) {
      if (!pipes.has(key)) pipes.set(key, load(key));
      return pipes.get(key)!;
    },
    async release() {
      for (const p of pipes.values()) (await p).dispose();
      pipes.clear();
    },
  };
}

/**
 * The replay table of a test file: every case on wasm, the cases named in `cpu` on cpu too, each backend with
 * freshly loaded pipelines (`pipeOf` picks a case's pipeline from the cache).
 */
export function describeReplays<C extends ReplayCase>(title: string, cases: C[], cpu: string[], pipes: ReturnType<typeof pipelineCache>, pipeOf: (c: C) => string): void {
  describe.each([['wasm', cases], ['cpu', cases.filter((c) => cpu.includes(c.file))]] as const)(`${title} (%s)`, (backend, list) => {
    beforeAll(async () => {
      await pipes.release();
      await useBackend(backend);
    });
    test.each(list.map((c) => [c.file, c] as const))('%s', async (_f, c) => {
      expectReplay(`${backend} ${c.file}`, await replay(await pipes.get(pipeOf(c)), c));
    }, 300_000);
  });
}
