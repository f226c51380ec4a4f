/**
 * Denoiser speed benchmark: full-size architectures with random seeded weights (nothing downloaded), or the
 * bundled demo model `tiny-shapes` (assets/tiny-shapes/unet, its real weights; VAE factor 4, so 64² = 16² latents).
 *
 *   npm run bench -- --model sd15|sd21|sdxl|pixart|tiny-shapes --height H --width W --steps 25 --gate-step G \
 *     --backend cpu|wasm|webgpu [--offload] [--weight-dtype float16] [--reps N (0: no separate forward timing)] [--loops N] [--random] \
 *     [--per-kind] [--no-profile] [--warmup N] [--threads N (wasm: XNNPACK threads, default every CPU)] [--json] \
 *     [--tgate-v1 (the paper's T-GATE v1: cross-attention only, no self-attention caching)] [--wait-idle S]
 *     [--controlnet (a ControlNet, diffusers' ControlNetModel.from_unet of the UNet, runs before it at every step)]
 *
 * `--loops N` runs the baseline and TGATE loops N times each (alternating) and reports the medians.
 * `--per-kind` times each distinct step kind instead of whole loops (see `BenchArgs.loopMode`).
 * `--wait-idle S` waits up to S seconds before each timed phase until other processes use under 0.1 core.
 * On Linux every timed phase also records its CPU by thread and the other processes' CPU (bench/proc-cpu.ts):
 * on a shared machine another job's CPU shows up as our wall time, and this says when it did.
 *
 * Reports seconds per denoiser forward (batch 2 and 1), the whole `steps`-step denoiser loop without and with
 * TGATE (the real TgateProcessor; batch 2 with guidance before the gate, batch 1 from it on), the backend's
 * own matMul GFLOP/s, our forward's GFLOP/s from the analytic count of bench/macs.ts, peak tensor memory,
 * and 25-step MACs at the paper's settings (the UNet's, as the paper's). The scheduler is a stand-in
 * (x ← x − 0.01·ε): only the denoiser loop is measured. With `--controlnet` the loop's MACs, MAC ratio and
 * GFLOP/s count the ControlNet too (its attentions are gated like the UNet's).
 */
import { initBackend } from '../src/backends/index.js';
import { PAPER } from './macs.js';
import { runBench } from './run-bench.js';
import { parseArgs } from './bench-args.js';

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const report = await initBackend(a.backend, { quiet: true, wasmThreads: a.threads });
  const { result, backendLine } = await runBench(a, report);
  if (a.json) {
    console.log(JSON.stringify(result));
    return;
  }
  const r = result;
  const G = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
  const T = (m: number) => (!Number.isFinite(m) ? '—' : m < 1e11 ? `${(m / 1e9).toFixed(3)}G` : `${(m / 1e12).toFixed(3)}T`);
  const how = a.loopMode === 'per-kind' ? ', per-kind sum' : a.loops > 1 ? `, median of ${a.loops}` : '';
  const p = PAPER[a.model];
  console.log(`\nmachine: ${r.machine}\nbackend: ${backendLine}\n`);
  console.log(`| ${a.model}${a.controlnet ? ' + ControlNet' : ''} ${a.height}×${a.width}, ${r.backend} | value |\n|---|---|`);
  console.log(`| forward batch 2 / batch 1, wall (CPU) | ${r.forwardSecondsBatch2.toFixed(3)} s (${r.forwardCpuSecondsBatch2.toFixed(3)}) / ${r.forwardSecondsBatch1.toFixed(3)} s (${r.forwardCpuSecondsBatch1.toFixed(3)}) |`);
  console.log(`| ${a.steps}-step loop baseline, wall (CPU)${how} | ${r.baselineSeconds.toFixed(2)} s (${r.baselineCpuSeconds.toFixed(2)}) |`);
  console.log(`| ${a.steps}-step loop TGATE (gate ${a.gateStep}), wall (CPU)${how} | ${r.tgateSeconds.toFixed(2)} s (${r.tgateCpuSeconds.toFixed(2)}) |`);
  console.log(`| baseline step ÷ forward batch 2, wall (CPU) | ${r.baselineStepOverForward.toFixed(3)} (${r.baselineStepCpuOverForwardCpu.toFixed(3)}) |`);
  console.log(`| forward batch 1 ÷ batch 2, wall (CPU) | ${r.forwardBatch1OverBatch2.toFixed(3)} (${r.forwardCpuBatch1OverBatch2.toFixed(3)}) |`);
  console.log(`| speed-up, wall (CPU) | ${r.speedup.toFixed(2)}× (${r.speedupCpu.toFixed(2)}×) |`);
  console.log(`| MAC ratio of this loop${a.controlnet ? ' (UNet + ControlNet)' : ''} (thop-style) / with attention matmuls | ${r.loopMacRatio.toFixed(3)}× / ${(r.loopMacsWithAttnBaseline / r.loopMacsWithAttnTgate).toFixed(3)}× |`);
  console.log(`| speed-up ÷ MAC ratio, wall (CPU) | ${r.speedupOverMacRatio.toFixed(3)} (${r.speedupCpuOverMacRatio.toFixed(3)}) |`);
  console.log(`| 1-min load average at the end | ${r.loadAverage.toFixed(2)} |`);
  const elsewhere = [...r.cpuSplit.baseline, ...r.cpuSplit.tgate].map((c) => (c ? c.elsewhere / c.wall : NaN));
  if (elsewhere.every(Number.isFinite)) console.log(`| other processes' CPU during the loops, baseline then TGATE (cores) | ${elsewhere.map((v) => v.toFixed(2)).join(', ')} |`);
  console.log(`| forward GFLOP/s (analytic, batch 2 / 1) | ${r.forwardGflops.toFixed(2)} / ${r.forwardGflopsBatch1.toFixed(2)} |`);
  if (a.offload) console.log(`| weight upload per forward (tf.tensor from host) | ${r.uploadSecondsPerForward.toFixed(2)} s |`);
  console.log(`| backend matMul 1024³ GFLOP/s | ${r.matmulGflops.toFixed(2)} |`);
  console.log(`| peak tensor memory (in-forward / between steps) | ${Number.isFinite(r.peakBytesInForward) ? G(r.peakBytesInForward) : '—'} / ${G(r.peakBytesBetweenSteps)} |`);
  console.log(`| 25-step MACs at ${p.size}², baseline → TGATE (ours) | ${T(r.macsBaseline)} → ${T(r.macsTgate)} (${r.macRatio.toFixed(3)}×) |`);
  console.log(`| 25-step MACs, paper | ${T(p.baseline)} → ${T(p.tgated)} |`);
  console.log(`| leaked tensors after both loops | ${r.leakedTensors} |`);
  if (r.maxCoresElsewhere > 0.1) {
    console.log(`\nOther processes used up to ${r.maxCoresElsewhere.toFixed(2)} cores during a timed phase: wall figures are not those of an idle machine (CPU figures are less affected). Rerun when the machine is idle, or with --wait-idle 300.`);
  }
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
