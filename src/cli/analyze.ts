/**
 * `tgate analyze [pipeline_dir] --prompt "…"`: one generation with the attention-store processor, then the
 * per-step change of cross- and self-attention (analysis.json), a chart (analysis.svg) and a suggested gate.
 *
 * r_i = mean over the cross-attention modules of ‖O_i − O_{i−1}‖/‖O_{i−1}‖ (module outputs, batch [uncond, cond]).
 * The change "stays below" the threshold T from the first step j with r_j < T and r_{j+1} < T (two consecutive
 * steps, as the automatic gate requires: r_i is noisy). Suggested gate = j + 2: the first step after that
 * window; step j + 1 is cached. `--gate-step auto` decides online and lands one step later (j + 3), since it
 * learns r_{j+1} only after step j + 1 ran. Default T = AUTO_GATE_THRESHOLD (0.04, src/attention/auto-gate.ts).
 */
import type { CommandModule } from 'yargs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadPipeline } from '../pipelines/load.js';
import { AttentionStoreProcessor, type StepChanges } from '../attention/attention-store.js';
import { attnProcessors, setAttnProcessor } from '../attention/registry.js';
import { AUTO_GATE_PATIENCE, AUTO_GATE_THRESHOLD } from '../attention/auto-gate.js';
import type { Module } from '../nn/module.js';
import { backendOption, demoModelDir, setupBackend, weightDtypeOption } from './options.js';
import { writeFileAtomic } from './files.js';
import { progressBar } from './progress.js';

interface Args {
  dir?: string; prompt: string; 'negative-prompt'?: string; steps: number; guidance?: number; seed: number;
  threshold: number; 'out-dir': string; backend: string; height?: number; width?: number; probs: boolean; variant?: string; 'weight-dtype': 'float32' | 'float16';
}

/** Per-step curves written to analysis.json (index k ↔ step[k]; step 0 has nothing to compare with). */
export interface AnalysisCurves {
  step: number[];
  timestep: number[];
  cross: { abs: number[]; rel: number[] };
  self: { abs: number[]; rel: number[] };
}

/** First index k with `patience` consecutive values rel[k…k+patience−1] below `threshold`, or −1. */
function settled(rel: number[], threshold: number, patience: number): number {
  for (let k = 0; k + patience <= rel.length; k++) {
    if (rel.slice(k, k + patience).every((r) => r < threshold)) return k;
  }
  return -1;
}

/** Hindsight suggestion: the step right after the first `patience` consecutive changes below `threshold` (null: never). */
export function suggestGate(steps: number[], rel: number[], threshold: number, patience = AUTO_GATE_PATIENCE): number | null {
  const k = settled(rel, threshold, patience);
  return k < 0 ? null : steps[k + patience - 1] + 1;
}

/** The gate the online rule of src/attention/auto-gate.ts would pick from the same curve (null: never). */
export function onlineGate(steps: number[], rel: number[], threshold: number, patience = AUTO_GATE_PATIENCE): number | null {
  const k = settled(rel, threshold, patience);
  return k < 0 ? null : steps[k + patience - 1] + 2;
}

export function curvesFrom(records: StepChanges[], timesteps: number[]): AnalysisCurves {
  const c: AnalysisCurves = { step: [], timestep: [], cross: { abs: [], rel: [] }, self: { abs: [], rel: [] } };
  for (const r of records) {
    c.step.push(r.step);
    c.timestep.push(timesteps[r.step]);
    c.cross.abs.push(r.attn2?.mean.out_l2 ?? NaN);
    c.cross.rel.push(r.attn2?.mean.out_rel ?? NaN);
    c.self.abs.push(r.attn1?.mean.out_l2 ?? NaN);
    c.self.rel.push(r.attn1?.mean.out_rel ?? NaN);
  }
  return c;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * The chart: relative change of cross- and self-attention per step on a log axis (they span two decades),
 * the threshold as a dashed line and the suggested gate as a vertical line.
 */
export function analysisSvg(c: AnalysisCurves, threshold: number, gate: number | null, title: string, numSteps: number): string {
  const W = 720, H = 420, L = 70, R = 20, T = 40, B = 60;
  const vals = [...c.cross.rel, ...c.self.rel, threshold].filter((v) => v > 0 && Number.isFinite(v));
  const lo = Math.floor(Math.log10(Math.min(...vals)));
  const hi = Math.ceil(Math.log10(Math.max(...vals)));
  const x = (s: number) => L + ((W - L - R) * s) / Math.max(1, numSteps - 1);
  const y = (v: number) => T + ((H - T - B) * (hi - Math.log10(v))) / Math.max(1, hi - lo);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (let e = lo; e <= hi; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v < 10 ** lo || v > 10 ** hi) continue;
      out.push(`<line x1="${L}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#ddd"/>`);
      out.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${Number(v.toPrecision(1))}</text>`);
    }
  }
  const every = Math.max(1, Math.ceil(numSteps / 25));
  for (let s = 0; s < numSteps; s += every) {
    out.push(`<line x1="${x(s)}" y1="${H - B}" x2="${x(s)}" y2="${H - B + 5}" stroke="black"/>`);
    out.push(`<text x="${x(s)}" y="${H - B + 18}" text-anchor="middle">${s}</text>`);
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 18}" text-anchor="middle">denoising step i (change from step i − 1 to i)</text>`);
  out.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">mean ‖O_i − O_{i−1}‖ / ‖O_{i−1}‖ (log)</text>`);
  const curve = (vals: number[], colour: string) => {
    const pts = c.step.map((s, k) => [s, vals[k]] as const).filter(([, v]) => v > 0 && Number.isFinite(v));
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map(([s, v]) => `${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`);
    for (const [s, v] of pts) out.push(`<circle cx="${x(s).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.5" fill="${colour}"/>`);
  };
  curve(c.cross.rel, '#d62728');
  curve(c.self.rel, '#1f77b4');
  out.push(`<line x1="${L}" y1="${y(threshold)}" x2="${W - R}" y2="${y(threshold)}" stroke="#555" stroke-dasharray="6 4"/>`);
  out.push(`<text x="${W - R - 4}" y="${y(threshold) - 5}" text-anchor="end" fill="#555">threshold ${threshold}</text>`);
  if (gate !== null) {
    out.push(`<line x1="${x(gate)}" y1="${T}" x2="${x(gate)}" y2="${H - B}" stroke="#2ca02c" stroke-width="2"/>`);
    out.push(`<text x="${x(gate) + 5}" y="${T + 14}" fill="#2ca02c">suggested gate: step ${gate}</text>`);
  }
  const lx = W - R - 190;
  out.push(`<rect x="${lx}" y="${T + 24}" width="180" height="44" fill="white" stroke="#999"/>`);
  out.push(`<line x1="${lx + 8}" y1="${T + 38}" x2="${lx + 30}" y2="${T + 38}" stroke="#d62728" stroke-width="2"/><text x="${lx + 36}" y="${T + 42}">cross-attention (attn2)</text>`);
  out.push(`<line x1="${lx + 8}" y1="${T + 58}" x2="${lx + 30}" y2="${T + 58}" stroke="#1f77b4" stroke-width="2"/><text x="${lx + 36}" y="${T + 62}">self-attention (attn1)</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export const analyzeCommand: CommandModule<object, Args> = {
  command: 'analyze [dir]',
  describe: 'Measure how fast attention converges over the steps and suggest a TGATE gate step',
  builder: (y) => y
    .positional('dir', { type: 'string', describe: 'diffusers pipeline folder (default: bundled demo model)' })
    .option('prompt', { type: 'string', demandOption: true, describe: 'text prompt' })
    .option('negative-prompt', { type: 'string' })
    .option('steps', { type: 'number', default: 25, describe: 'inference steps' })
    .option('guidance', { type: 'number', describe: 'guidance scale (pipeline default when omitted)' })
    .option('seed', { type: 'number', default: 0 })
    .option('height', { type: 'number' })
    .option('width', { type: 'number' })
    .option('threshold', {
      type: 'number', default: AUTO_GATE_THRESHOLD,
      describe: 'gate once the mean relative cross-attention change per step stays below this',
    })
    .option('probs', { type: 'boolean', default: false, describe: 'also record attention-probability changes (slow at large sizes)' })
    .option('variant', { type: 'string', describe: 'weight variant, e.g. fp16' })
    .options(weightDtypeOption)
    .option('out-dir', { type: 'string', default: '.', describe: 'where analysis.json and analysis.svg go' })
    .options(backendOption) as never,
  handler: async (a) => {
    if (!(a.threshold > 0)) throw new Error(`--threshold must be positive, got ${a.threshold}`);
    if (!Number.isInteger(a.steps) || a.steps < 2) throw new Error(`--steps must be an integer ≥ 2, got ${a.steps}`);
    await setupBackend(a.backend, a.threads as number | undefined);
    const dir = a.dir ?? demoModelDir();
    const bar = progressBar('loading');
    const pipe = await loadPipeline(dir, { variant: a.variant, weightDtype: a['weight-dtype'], onProgress: (name, i, n) => bar(i + 1, n, name) });
    const denoiser: Module = 'unet' in pipe ? pipe.unet : pipe.transformer;
    const saved = Object.fromEntries(attnProcessors(denoiser));
    const store = new AttentionStoreProcessor(denoiser, { probs: a.probs });
    try {
      setAttnProcessor(denoiser, store);
      const stepBar = progressBar('denoising');
      const t0 = Date.now();
      let timesteps: number[] = [];
      const { latents } = await pipe.generate({
        prompt: a.prompt, negativePrompt: a['negative-prompt'], numInferenceSteps: a.steps, guidanceScale: a.guidance,
        seed: a.seed, height: a.height, width: a.width, outputType: 'latent',
        onStep: (s) => { timesteps[s.step] = s.timestep; stepBar(s.step + 1, s.numSteps); },
      });
      latents.dispose();
      timesteps = timesteps.slice();
      const records = store.steps();
      const curves = curvesFrom(records, timesteps);
      const gate = suggestGate(curves.step, curves.cross.rel, a.threshold);
      const online = onlineGate(curves.step, curves.cross.rel, a.threshold);
      await mkdir(a['out-dir'], { recursive: true });
      const json = {
        pipeline: dir, prompt: a.prompt, steps: a.steps, guidance: a.guidance ?? null, seed: a.seed, threshold: a.threshold,
        definition: 'curves[k] compare step[k] with step[k]-1; abs = mean over modules of ||O_i - O_{i-1}||_2 (module output, '
          + 'batch [uncond, cond]); rel = mean over modules of ||O_i - O_{i-1}||_2 / ||O_{i-1}||_2; cross = attn2, self = attn1. '
          + `suggested_gate_step = the step after the first ${AUTO_GATE_PATIENCE} consecutive steps with cross.rel below threshold; `
          + "auto_gate_step = what gateStep 'auto' would pick online with this threshold (one step later).",
        suggested_gate_step: gate, auto_gate_step: online, seconds: (Date.now() - t0) / 1000,
        curves, steps_detail: records,
      };
      const jsonPath = path.join(a['out-dir'], 'analysis.json');
      const svgPath = path.join(a['out-dir'], 'analysis.svg');
      await writeFileAtomic(jsonPath, new TextEncoder().encode(JSON.stringify(json, null, 1) + '\n'));
      const title = `attention change per step — "${a.prompt}" (${a.steps} steps)`;
      await writeFileAtomic(svgPath, new TextEncoder().encode(analysisSvg(curves, a.threshold, gate, title, a.steps)));
      console.log(`wrote ${jsonPath} and ${svgPath}`);
      console.log(gate === null
        ? `cross-attention change never settles below ${a.threshold}: no gate suggested (try a larger --threshold)`
        : `suggested gate step: ${gate} (cross-attention change < ${a.threshold} for ${AUTO_GATE_PATIENCE} consecutive steps before it; `
          + `--gate-step auto would pick ${online})`);
    } finally {
      store.reset();
      setAttnProcessor(denoiser, saved);
      pipe.dispose();
    }
  },
};
