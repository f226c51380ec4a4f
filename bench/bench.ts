/**
 * Denoiser speed benchmark: full-size architectures with random seeded weights (nothing downloaded), or the
 * bundled demo model `tiny-shapes` (assets/tiny-shapes/unet, its real weights; VAE factor 4, so 64² = 16² latents).
 *
 *   npm run bench -- --model sd15|sd21|sdxl|pixart|tiny-shapes --height H --width W --steps 25 --gate-step G \
 *     --backend cpu|wasm|webgpu [--offload] [--reps N (0: no separate forward timing)] [--loops N] [--random] \
 *     [--no-profile] [--json]
 *
 * `--loops N` runs the baseline and TGATE loops N times each (alternating) and reports the medians.
 *
 * Reports seconds per denoiser forward (batch 2 and 1), the whole `steps`-step denoiser loop without and with
 * TGATE (the real TgateProcessor; batch 2 with guidance before the gate, batch 1 from it on), the backend's
 * own matMul GFLOP/s, our forward's GFLOP/s from the analytic count of bench/macs.ts, peak tensor memory,
 * and 25-step MACs at the paper's settings. The scheduler is a stand-in (x ← x − 0.01·ε): only the
 * denoiser loop is measured.
 */
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import { initBackend, WASM_HEAP_LIMIT_BYTES, type BackendName } from '../src/backend.js';
import { modelFromConfig } from '../src/models/registry.js';
import type { Module } from '../src/nn/module.js';
import { offloadWeights } from '../src/nn/offload.js';
import type { AttnContext } from '../src/attention/processor.js';
import { AttnProcessorDefault } from '../src/attention/processor.js';
import { setAttnProcessor } from '../src/attention/registry.js';
import { TgateProcessor, resolveTgate, tgateFlags } from '../src/attention/tgate.js';
import { loadModel } from '../src/pipelines/load.js';
import { PAPER, forwardMacs, generationMacs, loadConfig, modelDir, totalMacs, type ModelKey } from './macs.js';

interface Args {
  model: ModelKey; height: number; width: number; steps: number; gateStep: number; backend: BackendName;
  json: boolean; offload: boolean; reps: number; profile: boolean; seed: number; loops: number; random: boolean;
}

function parseArgs(argv: string[]): Args {
  const get = (k: string): string | undefined => { const i = argv.indexOf(`--${k}`); return i >= 0 ? argv[i + 1] : undefined; };
  const model = (get('model') ?? 'sd15') as ModelKey;
  if (!(model in PAPER)) throw new Error(`--model must be one of ${Object.keys(PAPER).join(', ')}, got ${model}`);
  const size = PAPER[model].size;
  const a: Args = {
    model,
    height: Number(get('height') ?? size), width: Number(get('width') ?? size),
    steps: Number(get('steps') ?? 25), gateStep: Number(get('gate-step') ?? PAPER[model].tgate.gateStep),
    backend: (get('backend') ?? 'wasm') as BackendName,
    json: argv.includes('--json'), offload: argv.includes('--offload'), profile: !argv.includes('--no-profile'),
    reps: Number(get('reps') ?? 2), seed: Number(get('seed') ?? 0),
    loops: Math.max(1, Number(get('loops') ?? 1)), random: argv.includes('--random'),
  };
  // Latents must survive every 2× downsampling: SD 3 times (×8 VAE), SDXL twice, PixArt patch 2, tiny-shapes twice (×4 VAE).
  const mult = model === 'pixart' ? 16 : (model === 'sdxl' ? 32 : (model === 'tiny-shapes' ? 16 : 64));
  if (a.height % mult || a.width % mult) throw new Error(`--height/--width must be multiples of ${mult} for ${model}`);
  return a;
}

const log = (s: string) => console.error(s);

/** Seconds to run `fn`, synchronised through a one-element readback (downloading large tensors would dominate). */
let lastCpuSeconds = 0;
const cpuNow = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

/** Wall seconds of `fn` (CPU seconds of this process land in `lastCpuSeconds`: robust to other load on the machine). */
async function timed<T extends tf.Tensor>(fn: () => T): Promise<[number, T]> {
  const c0 = cpuNow();
  const t0 = performance.now();
  const out = fn();
  const probe = out.slice(Array(out.rank).fill(0), Array(out.rank).fill(1));
  await probe.data();
  probe.dispose();
  lastCpuSeconds = cpuNow() - c0;
  return [(performance.now() - t0) / 1000, out];
}

async function matmulGflops(): Promise<number> {
  const n = 1024;
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  const ts: number[] = [];
  for (let r = 0; r < 4; r++) {
    const [s, c] = await timed(() => tf.matMul(a, b));
    c.dispose();
    if (r > 0) ts.push(s);
  }
  tf.dispose([a, b]);
  ts.sort((x, y) => x - y);
  return (2 * n ** 3) / ts[1] / 1e9;
}

/** MACs of the kernels a profiled run executed (convolutions and matMuls), to check the analytic count. */
function kernelMacs(kernels: { name: string; inputShapes: number[][]; outputShapes: number[][] }[]): number {
  let macs = 0;
  for (const k of kernels) {
    const out = k.outputShapes[0] ?? [];
    const numel = out.reduce((x, y) => x * y, 1);
    if (k.name === 'Conv2D' || k.name === 'FusedConv2D') {
      const f = k.inputShapes[1]; // HWIO
      macs += numel * f[0] * f[1] * f[2];
    } else if (k.name === 'MatMul' || k.name === 'BatchMatMul' || k.name === '_FusedMatMul') {
      const a = k.inputShapes[0];
      const m = out[out.length - 2];
      const contracted = a[a.length - 2] === m ? a[a.length - 1] : a[a.length - 2];
      macs += numel * contracted;
    }
  }
  return macs;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const report = await initBackend(a.backend, { quiet: true });
  const cpus = os.cpus();
  const machine = `${cpus[0]?.model?.trim()} × ${cpus.length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node ${process.versions.node}`;
  const backendLine = `${report.name}${report.details ? ` (${report.details})` : ''}${a.offload ? ', weight offload' : ''}`;
  log(`machine: ${machine}\nbackend: ${backendLine}`);

  const mm = await matmulGflops();
  log(`matMul 1024³: ${mm.toFixed(1)} GFLOP/s`);

  const cfg = loadConfig(a.model);
  const dir = a.random ? null : modelDir(a.model);
  type Denoiser = Module & { forward(o: Record<string, unknown>): tf.Tensor4D };
  let t0 = performance.now();
  const model = (dir ? await loadModel(dir) : modelFromConfig(cfg)) as Denoiser;
  const params = model.numParameters();
  // XNNPACK keeps a packed copy of every weight it has used, so resident weights cost twice their size on wasm.
  if (report.name === 'wasm' && !a.offload && params * 8 > WASM_HEAP_LIMIT_BYTES) {
    throw new Error(`${a.model} has ${(params * 4 / 1024 ** 3).toFixed(2)} GiB of fp32 weights; with XNNPACK's packed copies that exceeds the wasm heap (~3.9 GiB): add --offload`);
  }
  if (report.name === 'wasm' && params * 4 > WASM_HEAP_LIMIT_BYTES) {
    throw new Error(`${a.model} has ${(params * 4 / 1024 ** 3).toFixed(2)} GiB of fp32 weights: random init alone exceeds the wasm heap (~3.9 GiB)`);
  }
  if (!dir) {
    t0 = performance.now();
    model.initRandom(a.seed);
  }
  log(`${a.model}: ${(params / 1e6).toFixed(1)}M parameters, ${dir ? `weights loaded from ${dir}` : 'random init'} ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  let offload: ReturnType<typeof offloadWeights> | null = null;
  if (a.offload) {
    t0 = performance.now();
    const h = offloadWeights(model);
    offload = h;
    log(`offload: ${h.units.length} units, ${(h.hostBytes / 1024 ** 3).toFixed(2)} GiB in JS memory, ${(h.residentBytes / 1024 ** 2).toFixed(1)} MiB resident (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }

  // Inputs: one latent, unconditional and conditional text states (random), SDXL/PixArt extra conditions.
  const isPixart = a.model === 'pixart';
  const scale = PAPER[a.model].latentScale;
  const lh = a.height / scale;
  const lw = a.width / scale;
  const textLen = isPixart ? 120 : 77;
  const textDim = isPixart ? (cfg.caption_channels as number) : (cfg.cross_attention_dim as number);
  const x0 = tf.randomNormal([1, cfg.in_channels as number, lh, lw], 0, 1, 'float32', 11);
  const text = tf.randomNormal([2, textLen, textDim], 0, 1, 'float32', 12); // [uncond, cond]
  const sdxl = a.model === 'sdxl';
  const pooled = sdxl ? tf.randomNormal([2, 1280], 0, 1, 'float32', 13) : null;
  const timeIds = sdxl ? tf.tensor2d([[a.height, a.width, 0, 0, a.height, a.width], [a.height, a.width, 0, 0, a.height, a.width]]) : null;
  const outCh = cfg.in_channels as number;

  /** ε for `x` (batch 1); batch 2 = classifier-free guidance (uncond, cond), batch 1 = the uncond branch. */
  const denoise = (x: tf.Tensor, t: number, batch: 1 | 2, ctx: AttnContext): tf.Tensor4D => tf.tidy(() => {
    const sample = batch === 2 ? tf.concat([x, x]) : x;
    const enc = batch === 2 ? text : text.slice([0, 0, 0], [1, -1, -1]);
    let out: tf.Tensor4D;
    if (isPixart) {
      out = model.forward({ hiddenStates: sample, timestep: t, encoderHiddenStates: enc, resolution: [a.height, a.width], aspectRatio: [a.height / a.width], attnContext: ctx });
      out = out.slice([0, 0, 0, 0], [-1, outCh, -1, -1]); // drop the learned-variance channels
    } else {
      const extra = sdxl ? { textEmbeds: batch === 2 ? pooled : pooled!.slice([0, 0], [1, -1]), timeIds: batch === 2 ? timeIds : timeIds!.slice([0, 0], [1, -1]) } : {};
      out = model.forward({ sample, timestep: t, encoderHiddenStates: enc, ...extra, attnContext: ctx });
    }
    if (batch === 1) return out;
    const [u, c] = tf.split(out, 2, 0);
    return tf.add(u, tf.mul(tf.sub(c, u), 7.5)) as tf.Tensor4D;
  });

  // One profiled batch-2 forward: warm-up, the backend's peak bytes and the executed conv/matMul MACs.
  const fm = forwardMacs(cfg, { height: a.height, width: a.width, textLen, latentScale: scale });
  const fwdMacs = totalMacs(fm, true);
  let profilePeak = NaN;
  let executedMacs = NaN;
  if (a.profile) {
    const info = await tf.profile(() => { denoise(x0, 999, 2, {}).dispose(); });
    profilePeak = info.peakBytes;
    executedMacs = kernelMacs(info.kernels as never);
    log(`profiled batch-2 forward: peak ${(profilePeak / 1024 ** 3).toFixed(2)} GiB; executed conv+matMul ${(executedMacs / 1e9).toFixed(2)} GMACs vs analytic ${(2 * fwdMacs / 1e9).toFixed(2)} (ratio ${(executedMacs / (2 * fwdMacs)).toFixed(4)})`);
  } else if (a.reps > 0) {
    denoise(x0, 999, 2, {}).dispose(); // warm-up (kernel setup); skipped with --reps 0 where a forward is minutes
  }

  const fwd: Record<1 | 2, number> = { 1: 0, 2: 0 };
  const fwdCpu: Record<1 | 2, number> = { 1: 0, 2: 0 };
  for (const batch of [2, 1] as const) {
    const ts: number[] = [];
    const cs: number[] = [];
    for (let r = 0; r < a.reps; r++) {
      const [s, o] = await timed(() => denoise(x0, 999, batch, {}));
      o.dispose();
      ts.push(s);
      cs.push(lastCpuSeconds);
    }
    cs.sort((p, q) => p - q);
    fwdCpu[batch] = a.reps > 0 ? cs[Math.floor((cs.length - 1) / 2)] : NaN;
    ts.sort((p, q) => p - q);
    fwd[batch] = a.reps > 0 ? ts[Math.floor((ts.length - 1) / 2)] : NaN;
    log(`forward batch ${batch}: ${fwd[batch].toFixed(3)} s wall, ${fwdCpu[batch].toFixed(3)} s CPU (${ts.map((v) => v.toFixed(2)).join(', ')})`);
    if (offload) log(`  weight upload so far: ${offload.stats.uploadSeconds.toFixed(2)} s for ${(offload.stats.uploadBytes / 1024 ** 3).toFixed(2)} GiB`);
  }

  let peakSampled = tf.memory().numBytes;
  const tensorsBefore = tf.memory().numTensors;
  const loopCpu: number[] = [];
  const loop = async (useTgate: boolean): Promise<number> => {
    const c0 = cpuNow();
    const proc = new TgateProcessor();
    const t = resolveTgate({ ...PAPER[a.model].tgate, gateStep: a.gateStep }, a.steps);
    if (useTgate) setAttnProcessor(model, proc);
    let x = x0.clone();
    const start = performance.now();
    for (let i = 0; i < a.steps; i++) {
      const timestep = Math.round(999 - (i * 1000) / a.steps);
      const flags = tgateFlags(i, t);
      const batch = useTgate && i >= t.gateStep ? 1 : 2;
      const eps = denoise(x, timestep, batch, useTgate ? { step: i, tgate: flags } as AttnContext : { step: i });
      const next = tf.tidy(() => tf.sub(x, tf.mul(eps, 0.01)));
      eps.dispose();
      x.dispose();
      x = next;
      peakSampled = Math.max(peakSampled, tf.memory().numBytes);
    }
    const probe = x.slice([0, 0, 0, 0], [1, 1, 1, 1]);
    await probe.data();
    probe.dispose();
    const s = (performance.now() - start) / 1000;
    loopCpu.push(cpuNow() - c0);
    x.dispose();
    proc.reset();
    if (useTgate) setAttnProcessor(model, new AttnProcessorDefault());
    log(`${a.steps}-step loop ${useTgate ? `with TGATE (gate ${t.gateStep}, sp ${t.spInterval}, fi ${t.fiInterval}, warm-up ${t.warmUp})` : 'baseline'}: ${s.toFixed(2)} s wall, ${loopCpu[loopCpu.length - 1].toFixed(2)} s CPU`);
    return s;
  };
  // Alternate baseline and TGATE loops so that load changes on a shared machine hit both alike; medians.
  const wallB: number[] = [];
  const wallG: number[] = [];
  const cpuB: number[] = [];
  const cpuG: number[] = [];
  for (let r = 0; r < a.loops; r++) {
    wallB.push(await loop(false));
    cpuB.push(loopCpu[loopCpu.length - 1]);
    wallG.push(await loop(true));
    cpuG.push(loopCpu[loopCpu.length - 1]);
  }
  const median = (v: number[]): number => { const w = [...v].sort((p, q) => p - q); return w[Math.floor((w.length - 1) / 2)]; };
  const baselineSeconds = median(wallB);
  const tgateSeconds = median(wallG);
  const baselineCpu = median(cpuB);
  const tgateCpu = median(cpuG);
  const leaked = tf.memory().numTensors - tensorsBefore;

  const p = PAPER[a.model];
  const full = forwardMacs(cfg, { height: p.size, width: p.size, latentScale: p.latentScale });
  const macsBaseline = generationMacs(full, 25, null);
  const macsTgate = generationMacs(full, 25, p.tgate);
  const result = {
    model: a.model, backend: report.name, offload: a.offload, machine, date: new Date().toISOString(), height: a.height, width: a.width,
    steps: a.steps, gateStep: a.gateStep, params,
    forwardSecondsBatch2: fwd[2], forwardSecondsBatch1: fwd[1],
    baselineSeconds, tgateSeconds, speedup: baselineSeconds / tgateSeconds,
    forwardCpuSecondsBatch2: fwdCpu[2], forwardCpuSecondsBatch1: fwdCpu[1],
    baselineCpuSeconds: baselineCpu, tgateCpuSeconds: tgateCpu, speedupCpu: baselineCpu / tgateCpu,
    loops: a.loops, baselineSecondsAll: wallB, tgateSecondsAll: wallG, baselineCpuSecondsAll: cpuB, tgateCpuSecondsAll: cpuG,
    loadAverage: os.loadavg()[0],
    forwardMacsPerSample: fwdMacs, executedMacsBatch2: executedMacs,
    forwardGflops: (2 * 2 * fwdMacs) / fwd[2] / 1e9, forwardGflopsBatch1: (2 * fwdMacs) / fwd[1] / 1e9, matmulGflops: mm,
    uploadSecondsPerForward: offload ? offload.stats.uploadSeconds / offload.stats.uploadBytes * offload.hostBytes : 0,
    peakBytes: Number.isFinite(profilePeak) ? Math.max(profilePeak, peakSampled) : peakSampled, peakBytesBetweenSteps: peakSampled,
    loopMacsBaseline: generationMacs(fm, a.steps, null, true), loopMacsTgate: generationMacs(fm, a.steps, { ...p.tgate, gateStep: a.gateStep }, true),
    macsBaseline, macsTgate, macRatio: macsBaseline / macsTgate,
    speedupOverMacRatio: baselineSeconds / tgateSeconds / (macsBaseline / macsTgate),
    speedupCpuOverMacRatio: baselineCpu / tgateCpu / (macsBaseline / macsTgate), paperMacsBaseline: p.baseline, paperMacsTgate: p.tgated, leakedTensors: leaked,
  };
  model.dispose();
  tf.dispose([x0, text, pooled, timeIds].filter((v): v is tf.Tensor => v !== null));
  if (a.json) {
    console.log(JSON.stringify(result));
    return;
  }
  const G = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
  const T = (m: number) => (!Number.isFinite(m) ? '—' : m < 1e11 ? `${(m / 1e9).toFixed(3)}G` : `${(m / 1e12).toFixed(3)}T`);
  const med = a.loops > 1 ? `, median of ${a.loops}` : '';
  console.log(`\nmachine: ${machine}\nbackend: ${backendLine}\n`);
  console.log(`| ${a.model} ${a.height}×${a.width}, ${report.name} | value |\n|---|---|`);
  console.log(`| forward batch 2 / batch 1, wall (CPU) | ${fwd[2].toFixed(3)} s (${fwdCpu[2].toFixed(3)}) / ${fwd[1].toFixed(3)} s (${fwdCpu[1].toFixed(3)}) |`);
  console.log(`| ${a.steps}-step loop baseline, wall (CPU)${med} | ${baselineSeconds.toFixed(2)} s (${baselineCpu.toFixed(2)}) |`);
  console.log(`| ${a.steps}-step loop TGATE (gate ${a.gateStep}), wall (CPU)${med} | ${tgateSeconds.toFixed(2)} s (${tgateCpu.toFixed(2)}) |`);
  console.log(`| speed-up, wall (CPU) | ${result.speedup.toFixed(2)}× (${result.speedupCpu.toFixed(2)}×); loop MACs ratio ${(result.loopMacsBaseline / result.loopMacsTgate).toFixed(2)}× |`);
  console.log(`| MAC ratio, 25-step baseline ÷ TGATE at ${p.size}² (thop-style) | ${result.macRatio.toFixed(3)}× |`);
  console.log(`| speed-up ÷ MAC ratio, wall (CPU) | ${result.speedupOverMacRatio.toFixed(3)} (${result.speedupCpuOverMacRatio.toFixed(3)}) |`);
  console.log(`| 1-min load average at the end | ${result.loadAverage.toFixed(2)} |`);
  console.log(`| forward GFLOP/s (analytic, batch 2 / 1) | ${result.forwardGflops.toFixed(2)} / ${result.forwardGflopsBatch1.toFixed(2)} |`);
  if (offload) console.log(`| weight upload per forward (tf.tensor from host; XNNPACK repack not included) | ${result.uploadSecondsPerForward.toFixed(2)} s |`);
  console.log(`| backend matMul 1024³ GFLOP/s | ${mm.toFixed(2)} |`);
  console.log(`| peak tensor memory (in-forward / between steps) | ${Number.isFinite(profilePeak) ? G(profilePeak) : '—'} / ${G(peakSampled)} |`);
  console.log(`| 25-step MACs at ${p.size}², baseline → TGATE (ours) | ${T(macsBaseline)} → ${T(macsTgate)} |`);
  console.log(`| 25-step MACs, paper | ${T(p.baseline)} → ${T(p.tgated)} |`);
  console.log(`| leaked tensors after both loops | ${leaked} |`);
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
