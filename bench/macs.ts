/**
 * Analytic multiply-accumulate (MAC) counts of the denoisers, derived from their diffusers configs, counted
 * the way the T-GATE paper's table does (thop): every nn.Conv2d and nn.Linear, i.e. output elements ×
 * (input channels × kernel area); attention's own matmuls (q kᵀ, p v) are functional calls thop does not
 * hook, so they are reported separately. Also counts a whole generation with and without TGATE, applying
 * the per-step schedule of src/attention/tgate.ts (a reused attention skips q/k/v, both matmuls and the
 * out-projection; classifier-free guidance is dropped from the gate step on).
 *
 * `tsx bench/macs.ts` prints the table for the four models at the paper's settings.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { resolveTgate, tgateFlags, type TgateOptions } from '../src/attention/tgate.js';

/** MACs of one denoiser forward for ONE sample, split by what TGATE can skip. */
export interface ForwardMacs {
  /** Convolutions and linears outside the attention modules (ResNets, FF, projections, embeddings). */
  rest: number;
  /** to_q/to_k/to_v/to_out of self-attention. */
  selfLinear: number;
  /** to_q/to_k/to_v/to_out of cross-attention. */
  crossLinear: number;
  /** q kᵀ and p v of self-attention (not counted by thop). */
  selfMatmul: number;
  /** q kᵀ and p v of cross-attention (not counted by thop). */
  crossMatmul: number;
}

export interface MacOptions {
  /** Image size in pixels (latents are /latentScale). */
  height: number;
  width: number;
  /** VAE downsampling factor, pixels per latent: 8 for SD/SDXL/PixArt, 4 for the bundled tiny-shapes model. */
  latentScale?: number;
  /** Text tokens: 77 for CLIP, 120 for PixArt's T5. */
  textLen?: number;
}

type Cfg = Record<string, unknown>;
const zero = (): ForwardMacs => ({ rest: 0, selfLinear: 0, crossLinear: 0, selfMatmul: 0, crossMatmul: 0 });
const conv = (n: number, cin: number, cout: number, k: number): number => n * cout * cin * k * k;
const lin = (n: number, cin: number, cout: number): number => n * cin * cout;

/** One BasicTransformerBlock stack (diffusers Transformer2DModel inside the UNet) at n tokens, width c. */
function spatialTransformer(m: ForwardMacs, n: number, c: number, layers: number, x: number, l: number): void {
  m.rest += 2 * lin(n, c, c); // proj_in, proj_out (1×1 conv or linear: same count)
  for (let i = 0; i < layers; i++) {
    m.selfLinear += 4 * lin(n, c, c);
    m.selfMatmul += 2 * n * n * c;
    m.crossLinear += 2 * lin(n, c, c) + 2 * lin(l, x, c);
    m.crossMatmul += 2 * n * l * c;
    m.rest += lin(n, c, 8 * c) + lin(n, 4 * c, c); // GEGLU: proj to 2·4c, then 4c → c
  }
}

function resnet(m: ForwardMacs, n: number, cin: number, cout: number, temb: number): void {
  m.rest += conv(n, cin, cout, 3) + lin(1, temb, cout) + conv(n, cout, cout, 3) + (cin !== cout ? conv(n, cin, cout, 1) : 0);
}

const perBlock = (v: unknown, blocks: number): number[] => (Array.isArray(v) ? (v as number[]) : Array(blocks).fill((v as number) ?? 1));

/** UNet2DConditionModel (SD-1.5, SD-2.1, SDXL). */
export function unetMacs(cfg: Cfg, o: MacOptions): ForwardMacs {
  const m = zero();
  const boc = cfg.block_out_channels as number[];
  const nb = boc.length;
  const lpb = cfg.layers_per_block as number;
  const x = cfg.cross_attention_dim as number;
  const l = o.textLen ?? 77;
  const tlpb = perBlock(cfg.transformer_layers_per_block, nb);
  const rtlpb = cfg.reverse_transformer_layers_per_block ? (cfg.reverse_transformer_layers_per_block as number[]).flat() : [...tlpb].reverse();
  const temb = (cfg.time_embedding_dim as number | null) ?? 4 * boc[0];
  const h0 = o.height / (o.latentScale ?? 8);
  const w0 = o.width / (o.latentScale ?? 8);
  const tokens = (level: number) => (h0 / 2 ** level) * (w0 / 2 ** level);
  m.rest += lin(1, boc[0], temb) + lin(1, temb, temb);
  if (cfg.addition_embed_type === 'text_time') m.rest += lin(1, cfg.projection_class_embeddings_input_dim as number, temb) + lin(1, temb, temb);
  m.rest += conv(tokens(0), cfg.in_channels as number, boc[0], cfg.conv_in_kernel as number ?? 3);
  const down = cfg.down_block_types as string[];
  let prev = boc[0];
  for (let i = 0; i < nb; i++) {
    const n = tokens(i);
    for (let j = 0; j < lpb; j++) {
      resnet(m, n, j === 0 ? prev : boc[i], boc[i], temb);
      if (down[i].startsWith('CrossAttn')) spatialTransformer(m, n, boc[i], tlpb[i], x, l);
    }
    if (i < nb - 1) m.rest += conv(tokens(i + 1), boc[i], boc[i], 3);
    prev = boc[i];
  }
  const nMid = tokens(nb - 1);
  resnet(m, nMid, boc[nb - 1], boc[nb - 1], temb);
  spatialTransformer(m, nMid, boc[nb - 1], tlpb[nb - 1], x, l);
  resnet(m, nMid, boc[nb - 1], boc[nb - 1], temb);
  const up = cfg.up_block_types as string[];
  const rev = [...boc].reverse();
  let prevOut = rev[0];
  for (let i = 0; i < nb; i++) {
    const level = nb - 1 - i;
    const n = tokens(level);
    const out = rev[i];
    const inCh = rev[Math.min(i + 1, nb - 1)];
    for (let j = 0; j < lpb + 1; j++) {
      const skip = j === lpb ? inCh : out;
      resnet(m, n, (j === 0 ? prevOut : out) + skip, out, temb);
      if (up[i].startsWith('CrossAttn')) spatialTransformer(m, n, out, rtlpb[i], x, l);
    }
    if (i < nb - 1) m.rest += conv(tokens(level - 1), out, out, 3); // upsample 2× then 3×3 conv
    prevOut = out;
  }
  m.rest += conv(tokens(0), boc[0], cfg.out_channels as number, cfg.conv_out_kernel as number ?? 3);
  return m;
}

/** PixArtTransformer2DModel (PixArt-α). */
export function pixartMacs(cfg: Cfg, o: MacOptions): ForwardMacs {
  const m = zero();
  const d = (cfg.num_attention_heads as number) * (cfg.attention_head_dim as number);
  const p = cfg.patch_size as number;
  const n = (o.height / (o.latentScale ?? 8) / p) * (o.width / (o.latentScale ?? 8) / p);
  const l = o.textLen ?? 120;
  const caption = cfg.caption_channels as number;
  const outCh = cfg.out_channels as number;
  const addCond = cfg.use_additional_conditions ?? (cfg.sample_size === 128);
  m.rest += conv(n, cfg.in_channels as number, d, p); // patch embedding: kernel p, stride p
  m.rest += lin(1, 256, d) + lin(1, d, d) + lin(1, d, 6 * d); // timestep MLP and adaLN-single linear
  if (addCond) {
    const q = d / 3;
    m.rest += lin(2, 256, q) + lin(2, q, q) + lin(1, 256, q) + lin(1, q, q); // resolution (2 values), aspect ratio
  }
  m.rest += lin(l, caption, d) + lin(l, d, d); // caption projection
  for (let i = 0; i < (cfg.num_layers as number); i++) {
    m.selfLinear += 4 * lin(n, d, d);
    m.selfMatmul += 2 * n * n * d;
    m.crossLinear += 2 * lin(n, d, d) + 2 * lin(l, d, d);
    m.crossMatmul += 2 * n * l * d;
    m.rest += lin(n, d, 4 * d) + lin(n, 4 * d, d);
  }
  m.rest += lin(n, d, p * p * outCh);
  return m;
}

export function forwardMacs(cfg: Cfg, o: MacOptions): ForwardMacs {
  return String(cfg._class_name).startsWith('UNet') ? unetMacs(cfg, o) : pixartMacs(cfg, o);
}

/** Sum of one forward, per sample; `matmul` adds attention's own matmuls (not counted by thop). */
export function totalMacs(f: ForwardMacs, matmul = false): number {
  return f.rest + f.selfLinear + f.crossLinear + (matmul ? f.selfMatmul + f.crossMatmul : 0);
}

/**
 * MACs of a whole generation of `steps` denoiser calls with classifier-free guidance (batch 2), and with
 * TGATE when `tgate` is given: batch 1 from the gate on, and every attention the schedule reuses skipped.
 */
export function generationMacs(f: ForwardMacs, steps: number, tgate: TgateOptions | null, matmul = false): number {
  const sa = f.selfLinear + (matmul ? f.selfMatmul : 0);
  const ca = f.crossLinear + (matmul ? f.crossMatmul : 0);
  const all = totalMacs(f, matmul);
  if (!tgate) return 2 * steps * all;
  const t = resolveTgate(tgate, steps);
  let sum = 0;
  let saCached = false;
  let caCached = false;
  for (let i = 0; i < steps; i++) {
    const fl = tgateFlags(i, t);
    const batch = t.lcm || i < t.gateStep ? (t.lcm ? 1 : 2) : 1;
    let macs = all;
    // As TgateProcessor: reuse happens only when a cache exists.
    if (fl.saReuse && saCached) macs -= sa;
    if (fl.caReuse && caCached) macs -= ca;
    if (fl.saCache) saCached = true;
    if (fl.caCache) caCached = true;
    sum += batch * macs;
  }
  return sum;
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
