/**
 * The denoiser benchmark itself, shared by the CLI (bench/bench.ts) and the GPU-server check (bench/gpu.ts):
 * build a full-size architecture (random seeded weights) or the bundled demo UNet, with `--controlnet` a
 * ControlNet beside the UNet (bench/controlnet-bench.ts), then time forwards and the whole denoiser loop without
 * and with TGATE, beside the backend's own matMul rate and the analytic MAC count.
 */
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import { activeBackend, WASM_HEAP_LIMIT_BYTES, type BackendReport } from '../src/backends/index.js';
import { modelFromConfig, modelMacs } from '../src/models/registry.js';
import type { Module, Parameter } from '../src/nn/module.js';
import { offloadHandle, offloadWeights, type OffloadHandle } from '../src/nn/offload.js';
import type { AttnContext } from '../src/attention/processor.js';
import { AttnProcessorDefault } from '../src/attention/processor.js';
import { setAttnProcessor } from '../src/attention/registry.js';
import { TgateProcessor, resolveTgate, tgateFlags, type TgateFlags } from '../src/attention/tgate.js';
import { loadModel } from '../src/models/load.js';
import { streamsWeights } from '../src/layers/gemm.js';
import { contiguousRange } from '../src/layers/contiguous-range.js';
import { checkWeightDtype } from '../src/backends/kernels.js';
import { coresElsewhere, cpuSplit, formatSplit, loadElsewhere, readCpu, readLoad, waitForIdle, type CpuSplit } from './proc-cpu.js';
import { PAPER, controlnetGenerationMacs, generationMacs, loadConfig, modelDir, tgateV1, totalMacs } from './macs.js';
import { benchControlNet } from './controlnet-bench.js';
import type { BenchArgs } from './bench-args.js';
import type { TgateOptions } from '../src/attention/tgate.js';

const log = (s: string) => console.error(s);
const cpuNow = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
/** The median; of an even count, the mean of the two middle values. */
const median = (v: number[]): number => {
  const w = [...v].sort((p, q) => p - q);
  const m = w.length >> 1;
  return w.length % 2 ? w[m] : (w[m - 1] + w[m]) / 2;
};

/** Waits for `t` through a one-element readback: downloading large tensors would dominate on a GPU. */
async function sync(t: tf.Tensor): Promise<void> {
  const probe = t.slice(Array(t.rank).fill(0), Array(t.rank).fill(1));
  await probe.data();
  probe.dispose();
}

/**
 * Counts WebGPU program dispatches (TF.js kernels and ours alike: each is one compute pass) until `stop()`;
 * null on other backends. Each costs ~80–100 µs of CPU through Dawn.
 */
export function countDispatches(): { count: number; stop(): void } | null {
  if (activeBackend() !== 'webgpu') return null;
  type Run = (...args: unknown[]) => unknown;
  const backend = tf.backend() as unknown as { runWebGPUProgram: Run };
  const original = backend.runWebGPUProgram;
  const counter = { count: 0, stop: () => { delete (backend as Partial<typeof backend>).runWebGPUProgram; } };
  backend.runWebGPUProgram = function (this: unknown, ...args: unknown[]) { counter.count++; return original.apply(this, args); };
  return counter;
}

/** Wall and CPU seconds of `fn`, synchronised through `sync`. CPU seconds are robust to other load on the machine. */
async function timed<T extends tf.Tensor>(fn: () => T): Promise<{ wall: number; cpu: number; split: CpuSplit | null; out: T }> {
  const r0 = readCpu();
  const c0 = cpuNow();
  const t0 = performance.now();
  const out = fn();
  await sync(out);
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuNow() - c0;
  return { wall, cpu, split: cpuSplit(r0, readCpu()), out };
}

async function matmulGflops(): Promise<number> {
  const n = 1024;
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  const ts: number[] = [];
  for (let r = 0; r < 4; r++) {
    const { wall, out } = await timed(() => tf.matMul(a, b));
    out.dispose();
    if (r > 0) ts.push(wall);
  }
  tf.dispose([a, b]);
  return (2 * n ** 3) / median(ts) / 1e9;
}

/**
 * Seeded random weights drawn from one normal pool of 4 Mi values (each parameter a slice of it, tiled where
 * larger). Timing does not depend on the values, and this builds SDXL's 2.6 G parameters in seconds, where
 * `initRandom` draws every value on the CPU (minutes at that size, before the GPU sees anything).
 */
export function poolInit(model: Module, seed: number, std = 0.02, only?: Set<Parameter>): void {
  const poolSize = 1 << 22;
  const pool = tf.randomNormal([poolSize], 0, std, 'float32', seed);
  const params = [...model.namedParameters()].map(([, p]) => p).filter((p) => !only || only.has(p));
  // Read before any op uploads the pool (WebGPU in Node has no synchronous read-back of GPU tensors).
  const hostPool = params.some((p) => p.host || p.isPacked) ? (pool.dataSync() as Float32Array) : null;
  // The pool repeated so that every parameter is one contiguous range of it (element i of a parameter at
  // offset o is pool[(o + i) mod poolSize]): one copy per parameter, where wasm's Slice copies its whole input.
  let wide: tf.Tensor | undefined;
  let k = 0;
  for (const p of params) {
    const n = p.size;
    const offset = (k++ * 104729) % poolSize;
    if (p.host || p.isPacked) {
      // Offloaded (--offload: into host memory) or packed (--weight-dtype float16: halves made in JS): the same
      // values, copied in JS, no float32 backend tensor.
      const v = new Float32Array(n);
      for (let i = 0; i < n;) {
        const from = (offset + i) % poolSize;
        const len = Math.min(n - i, poolSize - from);
        v.set(hostPool!.subarray(from, from + len), i);
        i += len;
      }
      p.assign(v);
      continue;
    }
    wide ??= tf.tile(pool, [1 + Math.ceil(Math.max(...params.map((q) => q.size)) / poolSize)]);
    p.set(contiguousRange(wide, offset, p.shape));
  }
  pool.dispose();
  wide?.dispose();
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

type Denoiser = Module & { forward(o: Record<string, unknown>): tf.Tensor4D };

/** Runs one benchmark on the current backend and returns every figure (see the JSON fields in the README). */
export async function runBench(a: BenchArgs, report: BackendReport) {
  const cpus = os.cpus();
  const machine = `${cpus[0]?.model?.trim()} × ${cpus.length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node ${process.versions.node}`;
  const backendLine = `${report.name}${report.details ? ` (${report.details})` : ''}${a.offload ? ', weight offload' : ''}${a.weightDtype === 'float16' ? ', float16 weights' : ''}${a.controlnet ? ', with a ControlNet' : ''}`;
  log(`machine: ${machine}\nbackend: ${backendLine}`);

  /** Before a timed phase: wait for the rest of the machine to be idle (--wait-idle). */
  const idle = async (what: string): Promise<void> => {
    if (a.waitIdle <= 0) return;
    const w = await waitForIdle(a.waitIdle);
    if (w.waited > 2.5) log(`  waited ${w.waited.toFixed(0)} s for an idle machine before ${what} (other processes now ${w.cores.toFixed(2)} cores)`);
  };

  const mm = await matmulGflops();
  log(`matMul 1024³: ${mm.toFixed(1)} GFLOP/s`);

  const cfg = loadConfig(a.model);
  const dir = a.random ? null : modelDir(a.model);
  let t0 = performance.now();
  // With --offload the plan comes before the weights exist, so they are built in JS memory, never in the wasm heap.
  const model = (dir ? await loadModel(dir, { offload: a.offload, weightDtype: a.weightDtype }) : modelFromConfig(cfg)) as Denoiser;
  if (!dir) {
    checkWeightDtype(a.weightDtype);
    model.setWeightDtype(a.weightDtype);
  }
  const params = model.numParameters();
  // XNNPACK keeps a packed copy of every weight used as matMul's B or conv2d's filter: resident weights cost twice
  // their size on wasm unless Linear/Conv2d stream them (src/layers/gemm.ts, the default there).
  if (report.name === 'wasm' && !a.offload && params * (streamsWeights() ? 4 : 8) > WASM_HEAP_LIMIT_BYTES) {
    throw new Error(`${a.model} has ${(params * 4 / 1024 ** 3).toFixed(2)} GiB of fp32 weights; with XNNPACK's packed copies that exceeds the wasm heap (~3.9 GiB): add --offload`);
  }
  let offload: OffloadHandle | null = null;
  if (a.offload) {
    const h = offloadHandle(model) ?? offloadWeights(model);
    offload = h;
    log(`offload: ${h.units.length} units, ${(h.hostBytes / 1024 ** 3).toFixed(2)} GiB in JS memory, ${(h.residentBytes / 1024 ** 2).toFixed(1)} MiB resident`);
  }
  if (!dir) {
    t0 = performance.now();
    poolInit(model, a.seed);
  }
  log(`${a.model}: ${(params / 1e6).toFixed(1)}M parameters, ${dir ? `weights loaded from ${dir}` : 'random init'} ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const cn = a.controlnet ? benchControlNet(model, cfg, { height: a.height, width: a.width, latentScale: PAPER[a.model].latentScale, seed: a.seed }) : null;
  if (cn) {
    cn.model.setWeightDtype(a.weightDtype);
    poolInit(cn.model, a.seed + 1, 0.02, cn.own);
    const own = [...cn.own].reduce((n, p) => n + p.size, 0);
    log(`ControlNet: ${(cn.model.numParameters() / 1e6).toFixed(1)}M parameters, ${(own / 1e6).toFixed(1)}M its own (random init), the rest the UNet's tensors`);
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
      const extra = sdxl ? { textEmbeds: batch === 2 ? pooled! : pooled!.slice([0, 0], [1, -1]), timeIds: batch === 2 ? timeIds! : timeIds!.slice([0, 0], [1, -1]) } : {};
      const residuals = cn?.residuals({ sample, timestep: t, encoderHiddenStates: enc, ...extra, attnContext: ctx });
      out = model.forward({ sample, timestep: t, encoderHiddenStates: enc, ...extra, attnContext: ctx, ...residuals });
    }
    if (batch === 1) return out;
    const [u, c] = tf.split(out, 2, 0);
    return tf.add(u, tf.mul(tf.sub(c, u), 7.5)) as tf.Tensor4D;
  });

  // One profiled batch-2 forward: warm-up, the backend's peak bytes and the executed conv/matMul MACs.
  const fm = modelMacs(model, { height: a.height, width: a.width, textLen, latentScale: scale });
  const fwdMacs = totalMacs(fm, true) + (cn ? totalMacs(cn.macs, true) : 0);
  /** MACs of this run's loop: the UNet's, and the ControlNet's at every step. */
  const loopMacs = (tgate: TgateOptions | null, matmul = false) => (cn
    ? controlnetGenerationMacs(fm, [cn.macs], a.steps, tgate, { matmul }) : generationMacs(fm, a.steps, tgate, matmul));
  let profilePeak = NaN;
  let executedMacs = NaN;
  if (a.profile) {
    const info = await tf.profile(() => { denoise(x0, 999, 2, {}).dispose(); });
    profilePeak = info.peakBytes;
    executedMacs = kernelMacs(info.kernels as never);
    log(`profiled batch-2 forward: peak ${(profilePeak / 1024 ** 3).toFixed(2)} GiB; executed conv+matMul ${(executedMacs / 1e9).toFixed(2)} GMACs vs analytic ${(2 * fwdMacs / 1e9).toFixed(2)} (ratio ${(executedMacs / (2 * fwdMacs)).toFixed(4)})`);
  }
  // Warm-up (kernel setup, shader compilation) of both batch sizes; `--warmup 0` where a forward is minutes.
  for (let w = 0; w < a.warmup; w++) {
    for (const batch of [2, 1] as const) { const { out } = await timed(() => denoise(x0, 999, batch, {})); out.dispose(); }
  }

  const fwd: Record<1 | 2, number> = { 1: NaN, 2: NaN };
  const fwdCpu: Record<1 | 2, number> = { 1: NaN, 2: NaN };
  const fwdAll: Record<1 | 2, { wall: number; cpu: number; split: CpuSplit | null }[]> = { 1: [], 2: [] };
  for (const batch of [2, 1] as const) {
    if (a.reps <= 0) break;
    for (let r = 0; r < a.reps; r++) {
      await idle(`forward batch ${batch}`);
      const { wall, cpu, split, out } = await timed(() => denoise(x0, 999, batch, {}));
      out.dispose();
      fwdAll[batch].push({ wall, cpu, split });
    }
    fwd[batch] = median(fwdAll[batch].map((f) => f.wall));
    fwdCpu[batch] = median(fwdAll[batch].map((f) => f.cpu));
    log(`forward batch ${batch}: ${fwd[batch].toFixed(3)} s wall, ${fwdCpu[batch].toFixed(3)} s CPU (${fwdAll[batch].map((f) => f.wall.toFixed(2)).join(', ')})`);
    for (const f of fwdAll[batch]) log(`  ${f.wall.toFixed(2)} s: ${formatSplit(f.split)}`);
    if (offload) log(`  weight upload so far: ${offload.stats.uploadSeconds.toFixed(2)} s for ${(offload.stats.uploadBytes / 1024 ** 3).toFixed(2)} GiB`);
  }

  let peakSampled = tf.memory().numBytes;
  const tensorsBefore = tf.memory().numTensors;
  const tgateOptions = a.v1 ? tgateV1(a.gateStep, a.steps) : { ...PAPER[a.model].tgate, gateStep: a.gateStep };
  const tg = resolveTgate(tgateOptions, a.steps);
  const stepPlan = (i: number, useTgate: boolean): { batch: 1 | 2; flags?: TgateFlags } =>
    (useTgate ? { batch: i >= tg.gateStep ? 1 : 2, flags: tgateFlags(i, tg) } : { batch: 2 });
  const kindOf = (i: number, useTgate: boolean): string => JSON.stringify(stepPlan(i, useTgate));

  /**
   * One loop: the steps in `order` (schedule indices), each timed on its own when `perStep`. Returns wall and CPU
   * seconds of the whole run and of each step.
   */
  const runSteps = async (useTgate: boolean, order: number[], perStep: boolean) => {
    const proc = new TgateProcessor();
    const gated = cn ? [model, cn.model] : [model];
    if (useTgate) gated.forEach((m) => setAttnProcessor(m, proc));
    const stepWall: number[] = [];
    // wasm and cpu run each op when it is called, so a step's wall time and the other processes' CPU during it
    // are known without a readback (on GPUs a step only records work).
    const stepLoad: { wall: number; elsewhere: number }[] = [];
    const eager = report.name === 'wasm' || report.name === 'cpu';
    let x = x0.clone();
    const r0 = readCpu();
    const c0 = cpuNow();
    const start = performance.now();
    try {
      for (const i of order) {
        const s0 = performance.now();
        const rs = eager ? readLoad() : null;
        const { batch, flags } = stepPlan(i, useTgate);
        const timestep = Math.round(999 - (i * 1000) / a.steps);
        const eps = denoise(x, timestep, batch, useTgate ? { step: i, tgate: flags } as AttnContext : { step: i });
        const next = tf.tidy(() => tf.sub(x, tf.mul(eps, 0.01)));
        eps.dispose();
        x.dispose();
        x = next;
        peakSampled = Math.max(peakSampled, tf.memory().numBytes);
        if (perStep) { await sync(x); stepWall.push((performance.now() - s0) / 1000); }
        if (rs) stepLoad.push({ wall: (performance.now() - s0) / 1000, elsewhere: loadElsewhere(rs, readLoad()) });
      }
      await sync(x);
    } finally {
      x.dispose();
      proc.reset();
      if (useTgate) gated.forEach((m) => setAttnProcessor(m, new AttnProcessorDefault()));
    }
    return { wall: (performance.now() - start) / 1000, cpu: cpuNow() - c0, split: cpuSplit(r0, readCpu()), stepWall, stepLoad };
  };

  const all = Array.from({ length: a.steps }, (_, i) => i);
  /** Measured: the whole loop. Per-kind: each kind's first two occurrences, the second timing summed over the schedule. */
  type StepLoad = { wall: number; elsewhere: number }[];
  const loop = async (useTgate: boolean): Promise<{ wall: number; cpu: number; split?: CpuSplit | null; stepLoad?: StepLoad; kinds?: Record<string, number> }> => {
    const label = useTgate ? (a.v1 ? `TGATE v1 (gate ${tg.gateStep}, self-attention never reused)` : `TGATE (gate ${tg.gateStep}, sp ${tg.spInterval}, fi ${tg.fiInterval}, warm-up ${tg.warmUp})`) : 'baseline';
    await idle(`the ${label} loop`);
    if (a.loopMode === 'measured') {
      const r = await runSteps(useTgate, all, false);
      log(`${a.steps}-step loop ${label}: ${r.wall.toFixed(2)} s wall, ${r.cpu.toFixed(2)} s CPU; ${formatSplit(r.split)}`);
      return r;
    }
    const firstTwo = new Map<string, number[]>();
    for (const i of all) {
      const k = kindOf(i, useTgate);
      const seen = firstTwo.get(k) ?? [];
      if (seen.length < 2) firstTwo.set(k, [...seen, i]);
    }
    const order = [...firstTwo.values()].flat().sort((p, q) => p - q);
    const r = await runSteps(useTgate, order, true);
    const kinds: Record<string, number> = {};
    order.forEach((i, j) => { kinds[kindOf(i, useTgate)] = r.stepWall[j]; }); // the later occurrence wins
    const wall = all.reduce((s, i) => s + kinds[kindOf(i, useTgate)], 0);
    log(`${a.steps}-step loop ${label}, per-kind: ${wall.toFixed(2)} s (${order.length} steps run: ${r.stepWall.map((v) => v.toFixed(3)).join(', ')})`);
    return { wall, cpu: NaN, kinds };
  };

  // Alternate baseline and TGATE loops so that load changes on a shared machine hit both alike; medians.
  const wallB: number[] = [];
  const wallG: number[] = [];
  const cpuB: number[] = [];
  const cpuG: number[] = [];
  const splitB: (CpuSplit | null)[] = [];
  const splitG: (CpuSplit | null)[] = [];
  const stepsB: StepLoad[] = [];
  const stepsG: StepLoad[] = [];
  let kindSeconds: { baseline?: Record<string, number>; tgate?: Record<string, number> } = {};
  const dispatches = { baseline: NaN, tgate: NaN };
  /** One loop; the first of each kind also counts its WebGPU dispatches. */
  const countedLoop = async (useTgate: boolean, first: boolean) => {
    const counter = first ? countDispatches() : null;
    const r = await loop(useTgate);
    counter?.stop();
    if (counter) dispatches[useTgate ? 'tgate' : 'baseline'] = counter.count;
    return r;
  };
  for (let r = 0; r < a.loops; r++) {
    const b = await countedLoop(false, r === 0);
    wallB.push(b.wall); cpuB.push(b.cpu); splitB.push(b.split ?? null); stepsB.push(b.stepLoad ?? []);
    const g = await countedLoop(true, r === 0);
    wallG.push(g.wall); cpuG.push(g.cpu); splitG.push(g.split ?? null); stepsG.push(g.stepLoad ?? []);
    kindSeconds = { baseline: b.kinds, tgate: g.kinds };
  }
  if (!Number.isNaN(dispatches.baseline)) log(`WebGPU dispatches: baseline loop ${dispatches.baseline}, TGATE loop ${dispatches.tgate}`);
  // Without separate forward timings, a per-kind run's baseline step (one batch-2 forward) stands in for it.
  if (!Number.isFinite(fwd[2]) && kindSeconds.baseline) fwd[2] = Object.values(kindSeconds.baseline)[0];
  const baselineSeconds = median(wallB);
  const tgateSeconds = median(wallG);
  const baselineCpu = median(cpuB);
  const tgateCpu = median(cpuG);
  const leaked = tf.memory().numTensors - tensorsBefore;

  const p = PAPER[a.model];
  const full = modelMacs(model, { height: p.size, width: p.size, latentScale: p.latentScale });
  const macsBaseline = generationMacs(full, 25, null);
  const macsTgate = generationMacs(full, 25, p.tgate);
  const loopMacsBaseline = loopMacs(null);
  const loopMacsTgate = loopMacs(tgateOptions);
  const result = {
    model: a.model, controlnet: a.controlnet, controlnetMacsPerSample: cn ? totalMacs(cn.macs) : 0, backend: report.name, backendDetails: report.details ?? '', offload: a.offload, weightDtype: a.weightDtype, machine, date: new Date().toISOString(),
    height: a.height, width: a.width, steps: a.steps, gateStep: a.gateStep, params, loopMode: a.loopMode,
    forwardSecondsBatch2: fwd[2], forwardSecondsBatch1: fwd[1],
    baselineSeconds, tgateSeconds, speedup: baselineSeconds / tgateSeconds,
    forwardCpuSecondsBatch2: fwdCpu[2], forwardCpuSecondsBatch1: fwdCpu[1],
    baselineCpuSeconds: baselineCpu, tgateCpuSeconds: tgateCpu, speedupCpu: baselineCpu / tgateCpu,
    loops: a.loops, baselineSecondsAll: wallB, tgateSecondsAll: wallG, baselineCpuSecondsAll: cpuB, tgateCpuSecondsAll: cpuG,
    // The wasm criteria of issue 21: a baseline step against the isolated batch-2 forward, batch 1 against batch 2.
    baselineSecondsPerStep: baselineSeconds / a.steps, baselineCpuSecondsPerStep: baselineCpu / a.steps,
    baselineStepOverForward: baselineSeconds / a.steps / fwd[2], baselineStepCpuOverForwardCpu: baselineCpu / a.steps / fwdCpu[2],
    forwardBatch1OverBatch2: fwd[1] / fwd[2], forwardCpuBatch1OverBatch2: fwdCpu[1] / fwdCpu[2],
    // CPU seconds per timed phase by thread (Linux): this process's main thread, its other threads, other processes.
    cpuSplit: { forwardBatch2: fwdAll[2].map((f) => f.split), forwardBatch1: fwdAll[1].map((f) => f.split), baseline: splitB, tgate: splitG },
    // Per loop, per step (wasm, cpu): wall seconds and the other processes' CPU during the step, in cores.
    stepLoad: { baseline: stepsB, tgate: stepsG },
    /** The most CPU other processes used during any timed forward or loop, in cores: above ~0.1 the wall figures are not clean. */
    maxCoresElsewhere: Math.max(...[...fwdAll[2], ...fwdAll[1]].map((f) => coresElsewhere(f.split)), ...[...splitB, ...splitG].map(coresElsewhere)),
    forwardSecondsBatch2All: fwdAll[2].map((f) => f.wall), forwardSecondsBatch1All: fwdAll[1].map((f) => f.wall),
    forwardCpuSecondsBatch2All: fwdAll[2].map((f) => f.cpu), forwardCpuSecondsBatch1All: fwdAll[1].map((f) => f.cpu),
    kindSeconds, loadAverage: os.loadavg()[0], dispatchesBaselineLoop: dispatches.baseline, dispatchesTgateLoop: dispatches.tgate,
    forwardMacsPerSample: fwdMacs, executedMacsBatch2: executedMacs,
    forwardGflops: (2 * 2 * fwdMacs) / fwd[2] / 1e9, forwardGflopsBatch1: (2 * fwdMacs) / fwd[1] / 1e9, matmulGflops: mm,
    uploadSecondsPerForward: offload ? offload.stats.uploadSeconds / offload.stats.uploadBytes * offload.hostBytes : 0,
    peakBytes: Number.isFinite(profilePeak) ? Math.max(profilePeak, peakSampled) : peakSampled, peakBytesInForward: profilePeak, peakBytesBetweenSteps: peakSampled,
    // Thop-style MACs (conv + linear) of this run's loop and of the paper's 25-step setting at full size.
    loopMacsBaseline, loopMacsTgate, loopMacRatio: loopMacsBaseline / loopMacsTgate,
    loopMacsWithAttnBaseline: loopMacs(null, true), loopMacsWithAttnTgate: loopMacs(tgateOptions, true), tgateSettings: a.v1 ? 'v1' : 'readme',
    macsBaseline, macsTgate, macRatio: macsBaseline / macsTgate,
    speedupOverMacRatio: baselineSeconds / tgateSeconds / (loopMacsBaseline / loopMacsTgate),
    speedupCpuOverMacRatio: baselineCpu / tgateCpu / (loopMacsBaseline / loopMacsTgate), paperMacsBaseline: p.baseline, paperMacsTgate: p.tgated, leakedTensors: leaked,
  };
  model.dispose();
  cn?.dispose();
  tf.dispose([x0, text, pooled, timeIds].filter((v): v is tf.Tensor => v !== null));
  return { result, backendLine };
}

export type BenchResult = Awaited<ReturnType<typeof runBench>>['result'];
