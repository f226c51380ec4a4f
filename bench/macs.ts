/**
 * MAC counts of whole generations, with and without TGATE, against the T-GATE paper's table. One forward's
 * count comes from the model's spec (src/models/macs.ts, thop-style: convolutions and linears; attention's
 * own matmuls reported apart); this file applies the per-step schedule of src/attention/tgate.ts (a reused
 * attention skips q/k/v, both matmuls and the out-projection; classifier-free guidance is dropped from the
 * gate step on).
 *
 * `tsx bench/macs.ts` prints the table for the four models at the paper's settings.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { resolveTgate, tgateFlags, type TgateFlags, type TgateOptions } from '../src/attention/tgate.js';
import { modelFromConfig, modelMacs, type ForwardMacs, type MacOptions } from '../src/models/registry.js';

export type { ForwardMacs, MacOptions };
type Cfg = Record<string, unknown>;

/** One forward of the denoiser a diffusers config describes, per sample (the model is built without weights). */
export function forwardMacs(cfg: Cfg, o: MacOptions): ForwardMacs {
  return modelMacs(modelFromConfig(cfg), o);
}

/** Sum of one forward, per sample; `matmul` adds attention's own matmuls (not counted by thop). */
export function totalMacs(f: ForwardMacs, matmul = false): number {
  return f.rest + f.selfLinear + f.crossLinear + (matmul ? f.selfMatmul + f.crossMatmul : 0);
}

/** One denoiser call of a run: its batch and the TGATE flags it ran with (a `StepInfo`'s `batch` and `tgate`). */
export interface RunStep { batch: number; tgate?: TgateFlags }

/**
 * MACs of the denoiser calls of a run, step by step: `batch` samples each, minus every attention the TGATE
 * flags reuse (as TgateProcessor, only once a cache exists). Give it a recorded run (the `onStep` infos of a
 * generation, img2img included) or the schedule `generationMacs` assumes.
 */
export function runMacs(f: ForwardMacs, steps: readonly RunStep[], matmul = false): number {
  const sa = f.selfLinear + (matmul ? f.selfMatmul : 0);
  const ca = f.crossLinear + (matmul ? f.crossMatmul : 0);
  const all = totalMacs(f, matmul);
  let sum = 0;
  let saCached = false;
  let caCached = false;
  for (const { batch, tgate: fl } of steps) {
    let macs = all;
    if (fl?.saReuse && saCached) macs -= sa;
    if (fl?.caReuse && caCached) macs -= ca;
    if (fl?.saCache) saCached = true;
    if (fl?.caCache) caCached = true;
    sum += batch * macs;
  }
  return sum;
}

/**
 * The denoiser calls of a generation of `steps` steps with classifier-free guidance (batch 2), and with TGATE
 * when `tgate` is given: batch 1 from the gate on (always, in LCM mode), the flags of each step.
 */
export function generationSchedule(steps: number, tgate: TgateOptions | null): RunStep[] {
  if (!tgate) return new Array<RunStep>(steps).fill({ batch: 2 });
  const t = resolveTgate(tgate, steps);
  return Array.from({ length: steps }, (_, i): RunStep => ({ batch: t.lcm ? 1 : i < t.gateStep ? 2 : 1, tgate: tgateFlags(i, t) }));
}

/**
 * MACs of a whole generation of `steps` denoiser calls with classifier-free guidance (batch 2), and with
 * TGATE when `tgate` is given: batch 1 from the gate on, and every attention the schedule reuses skipped.
 * For img2img and inpainting `steps` is the number of steps that run (`strengthSteps(n, strength).run`): the
 * gate counts those.
 */
export function generationMacs(f: ForwardMacs, steps: number, tgate: TgateOptions | null, matmul = false): number {
  return runMacs(f, generationSchedule(steps, tgate), matmul);
}

/**
 * MACs of a generation with ControlNets: the UNet's calls (as {@link generationMacs}) plus every ControlNet's
 * forward (`controlnetMacs`) at each step. A ControlNet runs every step (with scale 0 outside its guidance
 * window, as diffusers), with the UNet's batch and TGATE flags (its attentions are gated like the UNet's),
 * except in guess mode, where guidance runs it on the conditional half only (batch 1 before the gate).
 */
export function controlnetGenerationMacs(
  unet: ForwardMacs, controlnets: readonly ForwardMacs[], steps: number, tgate: TgateOptions | null, o: { matmul?: boolean; guessMode?: boolean } = {},
): number {
  const schedule = generationSchedule(steps, tgate);
  const own = o.guessMode ? schedule.map((s) => ({ ...s, batch: 1 })) : schedule;
  return runMacs(unet, schedule, o.matmul) + controlnets.reduce((sum, cn) => sum + runMacs(cn, own, o.matmul), 0);
}

/**
 * T-GATE README / paper settings and MACs (25 steps). `tiny-shapes` is the bundled demo UNet
 * (assets/tiny-shapes/unet, 4.1 M parameters, VAE factor 4: 64² pixels = 16² latents) at the SD settings; not in the paper.
 */
export const PAPER = {
  sd15: { config: 'sd15_unet', size: 512, latentScale: 8, tgate: { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }, baseline: 16.938e12, tgated: 9.875e12 },
  sd21: { config: 'sd21_unet', size: 768, latentScale: 8, tgate: { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }, baseline: NaN, tgated: NaN },
  sdxl: { config: 'sdxl_unet', size: 1024, latentScale: 8, tgate: { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }, baseline: 149.438e12, tgated: 84.438e12 },
  pixart: { config: 'pixart_alpha_1024_transformer', size: 1024, latentScale: 8, tgate: { gateStep: 15, spInterval: 3, fiInterval: 1, warmUp: 2 }, baseline: 107.031e12, tgated: 65.318e12 },
  'tiny-shapes': { config: 'tiny-shapes', size: 64, latentScale: 4, tgate: { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }, baseline: NaN, tgated: NaN },
} as const;
export type ModelKey = keyof typeof PAPER;

// TGATE_ROOT: the project root when this runs bundled elsewhere (bench/gpu.ts on a GPU server).
const ROOT = process.env.TGATE_ROOT ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Component folder holding real weights, for models that ship them (the bundled demo model). */
export function modelDir(model: ModelKey): string | null {
  return model === 'tiny-shapes' ? path.join(ROOT, 'assets', 'tiny-shapes', 'unet') : null;
}

export function loadConfig(model: ModelKey): Cfg {
  const dir = modelDir(model);
  const file = dir ? path.join(dir, 'config.json') : path.join(ROOT, 'test', 'fixtures', 'configs', `${PAPER[model].config}.json`);
  return JSON.parse(readFileSync(file, 'utf8')) as Cfg;
}

const T = (x: number) => (!Number.isFinite(x) ? '—' : x < 1e11 ? `${(x / 1e9).toFixed(3)}G` : `${(x / 1e12).toFixed(3)}T`);

/** GMACs: two decimals, or three significant digits below 1 G (the tiny-shapes model). */
const g9 = (x: number) => (x < 1e9 ? (x / 1e9).toPrecision(3) : (x / 1e9).toFixed(2));

/** Markdown table: ours (thop-style, and with attention matmuls) beside the paper's. */
export function macTable(steps = 25): string {
  const rows = [
    '| model | size | forward/sample (thop-style) | 25-step baseline: ours / paper / ratio | 25-step TGATE: ours / paper / ratio | ours TGATE ÷ baseline (paper) | with attn matmuls: baseline → TGATE |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const key of Object.keys(PAPER) as ModelKey[]) {
    const p = PAPER[key];
    const f = forwardMacs(loadConfig(key), { height: p.size, width: p.size, latentScale: p.latentScale });
    const b = generationMacs(f, steps, null);
    const g = generationMacs(f, steps, p.tgate);
    const bm = generationMacs(f, steps, null, true);
    const gm = generationMacs(f, steps, p.tgate, true);
    const r = (a: number, q: number) => (Number.isFinite(q) ? (a / q).toFixed(3) : '—');
    rows.push(`| ${key} | ${p.size}² | ${g9(totalMacs(f))}G | ${T(b)} / ${T(p.baseline)} / ${r(b, p.baseline)} | ${T(g)} / ${T(p.tgated)} / ${r(g, p.tgated)} | ${(g / b).toFixed(3)} (${Number.isFinite(p.tgated) ? (p.tgated / p.baseline).toFixed(3) : '—'}) | ${T(bm)} → ${T(gm)} |`);
  }
  return rows.join('\n');
}

/**
 * T-GATE v1's schedule, the one of the paper's tables, as our options: cross-attention cached and guidance
 * dropped from `gate` on; self-attention never reused (its warm-up lasts the whole generation).
 */
export function tgateV1(gate: number, steps: number): TgateOptions {
  return { gateStep: gate, spInterval: 1, fiInterval: 1, warmUp: steps };
}

/** The paper's TGATE column, reproduced: MACs of T-GATE v1 at the gate step that fits it. */
export function crossOnlyMacs(f: ForwardMacs, steps: number, gate: number): number {
  return generationMacs(f, steps, tgateV1(gate, steps));
}

/** Markdown table: for each paper model, the v1 gate step whose count is nearest the paper's TGATE MACs. */
export function paperFitTable(steps = 25): string {
  const rows = ['| model | v1 gate step | v1 count | paper | difference | MAC ratio there (ours at README settings) |', '|---|---|---|---|---|---|'];
  for (const key of ['sd15', 'sdxl', 'pixart'] as const) {
    const p = PAPER[key];
    const f = forwardMacs(loadConfig(key), { height: p.size, width: p.size, latentScale: p.latentScale });
    let best = 1;
    for (let g = 1; g < steps; g++) {
      if (Math.abs(crossOnlyMacs(f, steps, g) - p.tgated) < Math.abs(crossOnlyMacs(f, steps, best) - p.tgated)) best = g;
    }
    const v = crossOnlyMacs(f, steps, best);
    const b = generationMacs(f, steps, null);
    rows.push(`| ${key} | ${best} | ${T(v)} | ${T(p.tgated)} | ${((v / p.tgated - 1) * 100).toFixed(3)} % | ${(b / v).toFixed(3)}× (${(b / generationMacs(f, steps, p.tgate)).toFixed(3)}×) |`);
  }
  return rows.join('\n');
}

/** Breakdown of one forward per sample, in GMACs. */
export function breakdownTable(): string {
  const rows = ['| model | size | rest | self-attn linear | cross-attn linear | self-attn matmul | cross-attn matmul |', '|---|---|---|---|---|---|---|'];
  for (const key of Object.keys(PAPER) as ModelKey[]) {
    const p = PAPER[key];
    const f = forwardMacs(loadConfig(key), { height: p.size, width: p.size, latentScale: p.latentScale });
    const g = g9;
    rows.push(`| ${key} | ${p.size}² | ${g(f.rest)} | ${g(f.selfLinear)} | ${g(f.crossLinear)} | ${g(f.selfMatmul)} | ${g(f.crossMatmul)} |`);
  }
  return rows.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  console.log('MACs, 25 steps, batch 2 (classifier-free guidance), TGATE at T-GATE README settings\n');
  console.log(macTable());
  console.log("\nThe paper's TGATE MACs as T-GATE v1 (cross-attention only) at a gate step\n");
  console.log(paperFitTable());
  console.log('\nOne forward, one sample, GMACs\n');
  console.log(breakdownTable());
}
