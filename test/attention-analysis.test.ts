/**
 * The attention-store processor reproduces diffusers' attention-convergence figures
 * (test/fixtures/ext/analysis/attention_convergence.json): sd15_tiny, DDIM (SD config), 10 steps, guidance 7.5.
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { AttentionStoreProcessor, type AttentionChange, type StepChanges } from '../src/attention/attention-store.js';
import { attnProcessors, setAttnProcessor } from '../src/attention/registry.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import { resolveTgate } from '../src/attention/tgate.js';
import { onlineGate, suggestGate } from '../src/cli/analyze.js';
import { AUTO_GATE_THRESHOLD } from '../src/attention/auto-gate.js';

type Figures = Record<string, number>;
interface Ref {
  attn1_modules: string[];
  attn2_modules: string[];
  out_norm_step0: Record<string, number>;
  steps: Record<string, Record<'attn1' | 'attn2', { mean: Figures; per_module: Record<string, Figures> }>>;
}
const ref = JSON.parse(fs.readFileSync(fixture('ext/analysis/attention_convergence.json'), 'utf8')) as Ref;
const schedIndex = readPythonJson<{ cases: Record<string, { config_passed: Record<string, unknown> }> }>(fixture('schedulers/index.json'));

/**
 * Tolerance, relative to each reference figure. The figures are norms of differences of nearly equal tensors
 * (‖O_i − O_{i−1}‖ is 0.2–10% of ‖O‖), so the ~1e-7–1e-6 relative float32 disagreement of the outputs
 * themselves is amplified by up to ‖O‖/‖ΔO‖ ≈ 500 at the last steps. Measured worst on wasm: 8.5e-6 (step 8,
 * out_l2_cond of a self-attention); 1e-4 leaves a >10× margin and still catches real errors: a float32 sum of
 * the 8M squared probabilities (instead of per-row sums finished in float64) was off by 2%, a wrong step
 * pairing by tens of percent.
 */
const TOL = 1e-4;

describe('attention-store processor (wasm)', () => {
  let pipe: StableDiffusionPipeline;
  let got: StepChanges[] = [];
  let store: AttentionStoreProcessor;
  let before = 0;
  let after = 0;
  let held = 0;

  beforeAll(async () => {
    await useBackend('wasm');
    const g = await loadFixture('tgate/sd15_ddim_baseline.safetensors');
    pipe = (await loadPipeline(fixture('pipelines', 'sd15_tiny'))) as StableDiffusionPipeline;
    const shipped = pipe.scheduler;
    pipe.scheduler = schedulerFromConfig(schedIndex.cases.ddim_sd.config_passed, 'DDIMScheduler');
    shipped.dispose();
    const saved = Object.fromEntries(attnProcessors(pipe.unet));
    store = new AttentionStoreProcessor(pipe.unet);
    setAttnProcessor(pipe.unet, store);
    before = tf.memory().numTensors;
    const { latents } = await pipe.generate({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], latents: g['in.latents'],
      numInferenceSteps: 10, guidanceScale: 7.5, outputType: 'latent',
    });
    latents.dispose();
    held = store.heldTensors;
    got = store.steps();
    store.reset();
    after = tf.memory().numTensors;
    setAttnProcessor(pipe.unet, saved);
    Object.values(g).forEach((t) => t.dispose());
  }, 120_000);

  afterAll(() => pipe?.dispose());

  test('records steps 1…9 for the six self- and six cross-attention modules', () => {
    expect(got.map((s) => s.step)).toEqual(Object.keys(ref.steps).map(Number));
    for (const s of got) {
      expect(Object.keys(s.attn1!.per_module).sort()).toEqual([...ref.attn1_modules].sort());
      expect(Object.keys(s.attn2!.per_module).sort()).toEqual([...ref.attn2_modules].sort());
    }
  });

  test('memory stays bounded: only the previous step is held, and reset frees it', () => {
    // 12 modules × (output + probabilities).
    expect(held).toBe(24);
    expect(after).toBe(before);
  });

  test('every figure (per module and mean, per step) matches diffusers', () => {
    let worst = { err: 0, where: '' };
    const check = (gotV: number | undefined, want: number, where: string) => {
      if (gotV === undefined) throw new Error(`${where}: not recorded`);
      const err = Math.abs(gotV - want) / Math.abs(want);
      if (err > worst.err) worst = { err, where };
      if (!(err <= TOL)) throw new Error(`${where}: got ${gotV}, want ${want} (rel err ${err.toExponential(2)} > ${TOL})`);
    };
    for (const s of got) {
      const r = ref.steps[String(s.step)];
      for (const kind of ['attn1', 'attn2'] as const) {
        for (const [k, want] of Object.entries(r[kind].mean)) {
          check((s[kind]!.mean as Figures)[k], want, `step ${s.step} ${kind} mean ${k}`);
        }
        for (const [mod, figs] of Object.entries(r[kind].per_module)) {
          for (const [k, want] of Object.entries(figs)) {
            check(s[kind]!.per_module[mod][k as keyof AttentionChange], want, `step ${s.step} ${mod} ${k}`);
          }
        }
      }
    }
    console.log(`attention convergence (wasm): worst rel err ${worst.err.toExponential(2)} at ${worst.where}`);
  });
});

describe("TGATE with gateStep 'auto' (wasm)", () => {
  const steps = Object.keys(ref.steps).map(Number);
  const crossRel = steps.map((s) => ref.steps[String(s)].attn2.mean.out_rel);
  let pipe: StableDiffusionPipeline;
  let g: Record<string, tf.Tensor>;

  beforeAll(async () => {
    await useBackend('wasm');
    g = await loadFixture('tgate/sd15_ddim_baseline.safetensors');
    pipe = (await loadPipeline(fixture('pipelines', 'sd15_tiny'))) as StableDiffusionPipeline;
    const shipped = pipe.scheduler;
    pipe.scheduler = schedulerFromConfig(schedIndex.cases.ddim_sd.config_passed, 'DDIMScheduler');
    shipped.dispose();
  }, 60_000);
  afterAll(() => {
    pipe?.dispose();
    Object.values(g ?? {}).forEach((t) => t.dispose());
  });

  const run = async (tgate: Record<string, unknown>) => {
    const batches: number[] = [];
    let gate: number | undefined;
    const { latents } = await pipe.generate({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], latents: g['in.latents'],
      numInferenceSteps: 10, guidanceScale: 7.5, outputType: 'latent', tgate,
      onStep: (s) => { batches.push(s.batch); gate ??= s.gateStep; },
    });
    return { latents, batches, gate };
  };

  test('the hindsight and online rules on the reference curve', () => {
    // r_2 = 0.047, r_3 = 0.032, r_4 = 0.021: settled (2 steps < 0.04) from step 3.
    expect(suggestGate(steps, crossRel, AUTO_GATE_THRESHOLD)).toBe(5);
    expect(onlineGate(steps, crossRel, AUTO_GATE_THRESHOLD)).toBe(6);
    expect(onlineGate(steps, crossRel, 1e-6)).toBeNull();
  });

  test('picks the gate of the online rule and then runs exactly as that fixed gate, without leaks', async () => {
    const want = onlineGate(steps, crossRel, AUTO_GATE_THRESHOLD)!;
    const before = tf.memory().numTensors;
    const auto = await run({ gateStep: 'auto' });
    const fixed = await run({ gateStep: want });
    expect(auto.gate).toBe(want);
    expect(auto.batches).toEqual(fixed.batches);
    expect(auto.batches).toEqual(Array.from({ length: 10 }, (_, i) => (i < want ? 2 : 1)));
    expect(relL2(auto.latents.dataSync(), fixed.latents.dataSync())).toBe(0);
    auto.latents.dispose();
    fixed.latents.dispose();
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);

  test('a threshold never reached keeps guidance on every step', async () => {
    const r = await run({ gateStep: 'auto', autoThreshold: 1e-6 });
    r.latents.dispose();
    expect(r.gate).toBeUndefined();
    expect(r.batches).toEqual(Array(10).fill(2));
  }, 120_000);

  test('invalid settings are rejected by name', () => {
    expect(() => resolveTgate({ gateStep: 5, autoThreshold: 0.1 }, 10)).toThrow(/autoThreshold needs gateStep 'auto'/);
    expect(() => resolveTgate({ gateStep: 'auto', autoThreshold: -1 }, 10)).toThrow(/autoThreshold must be a positive number/);
  });
});
