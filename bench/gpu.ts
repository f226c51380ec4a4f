/**
 * The GPU-server check: WebGPU (Dawn over OpenGL ES on the NVIDIA driver), packed with ../shared/gpu/pack.sh and
 * run as `TGATE_ROOT=$PWD bash .gpu/run.sh [--budget-s S] [--no-check] [job; job; …]` from the project root (TGATE_ROOT lets
 * the bundle find test/fixtures and assets/). First it reproduces two recorded tiny-shapes diffusers runs (baseline
 * and T-GATE gate 10) on the GPU, then runs the benchmark jobs (bench/run-bench.ts flags) in order while the time
 * budget lasts. Every result is written to $OUT/gpu-results.json as soon as it exists, so a run cut short keeps
 * what it measured.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { initBackend, releaseWebgpuBufferPool, setWebgpuFusedKernels } from '../src/backends/index.js';
import { parseJson } from '../src/io/json.js';
import { openSafetensors } from '../src/io/node-source.js';
import { loadPipeline } from '../src/pipelines/load.js';
import type { StableDiffusionPipeline } from '../src/pipelines/stable-diffusion.js';
import { relL2 } from '../src/eval/rel-l2.js';
import { runBench } from './run-bench.js';
import { parseArgs } from './bench-args.js';

const DEFAULT_JOBS = [
  '--model sd15 --height 512 --width 512 --no-profile --loops 2',
  '--model sd15 --height 512 --width 512 --no-profile --loops 2 --no-fused',
  '--model sd15 --height 512 --width 512 --no-profile --loops 2 --submit-batch 1000',
  '--model sdxl --height 1024 --width 1024 --no-profile --reps 0',
  '--model pixart --height 1024 --width 1024 --no-profile --reps 0',
  '--model sd21 --height 768 --width 768 --no-profile --reps 0',
  '--model tiny-shapes --height 64 --width 64 --loops 3 --no-profile',
];

const argv = process.argv.slice(2);
const DEFAULT_SUBMIT_BATCH = 15; // tfjs-backend-webgpu's own default
const budgetAt = argv.indexOf('--budget-s');
const budget = budgetAt >= 0 ? Number(argv.splice(budgetAt, 2)[1]) : 480;
const checkAt = argv.indexOf('--no-check');
const check = checkAt < 0;
if (!check) argv.splice(checkAt, 1);
const jobs = argv.length ? argv.join(' ').split(';').map((s) => s.trim()).filter(Boolean) : DEFAULT_JOBS;
const root = process.env.TGATE_ROOT ?? process.cwd();
const outDir = process.env.OUT ?? '.';
const started = performance.now();
const elapsed = (): number => (performance.now() - started) / 1000;
const results: Record<string, unknown>[] = [];
const save = (): void => writeFileSync(path.join(outDir, 'gpu-results.json'), JSON.stringify(results, null, 1));
const say = (s: string): void => console.log(`[${elapsed().toFixed(0)} s] ${s}`);

/** Recorded diffusers runs of the bundled model, reproduced from the prompt text on this GPU. */
async function correctness(): Promise<void> {
  const pipe = (await loadPipeline(path.join(root, 'assets', 'tiny-shapes'))) as StableDiffusionPipeline;
  const ref = await openSafetensors(path.join(root, 'test', 'fixtures', 'tiny-shapes', 'reference_runs.safetensors'));
  const indexFile = path.join(root, 'test', 'fixtures', 'tiny-shapes', 'reference_runs.json');
  const index = parseJson<{ runs: { key: string; prompt: string }[] }>(readFileSync(indexFile), indexFile);
  const call = { numInferenceSteps: 25, guidanceScale: 7.5, height: 64, width: 64, outputType: 'latent' as const };
  for (const r of index.runs.slice(0, 2)) {
    const init = await ref.tensor(`${r.key}.init_latents`);
    for (const [name, tgate] of [['baseline', undefined], ['tgate10', { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }]] as const) {
      const want = await ref.tensor(`${r.key}.${name}_final_latents`);
      const t0 = performance.now();
      const out = await pipe.generate({ prompt: r.prompt, latents: init, ...call, tgate });
      const got = await out.latents.data();
      const e = relL2(got, await want.data());
      results.push({ check: 'tiny-shapes reference run', key: r.key, run: name, relL2: e, seconds: (performance.now() - t0) / 1000 });
      say(`tiny-shapes ${r.key} ${name}: rel-L2 ${e.toExponential(2)} vs diffusers, ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      tf.dispose([out.latents, want]);
    }
    init.dispose();
  }
  await ref.close();
  pipe.dispose();
}

async function main(): Promise<void> {
  const report = await initBackend('webgpu', { quiet: true });
  say(`backend ${report.name}: ${report.details ?? ''}`);
  results.push({ backend: report.name, details: report.details ?? '', budgetSeconds: budget });
  if (check) try { await correctness(); } catch (e) { results.push({ check: 'tiny-shapes reference run', error: String(e) }); say(`correctness failed: ${e}`); }
  save();
  for (const job of jobs) {
    if (elapsed() > budget) { say(`budget of ${budget} s spent: skipping "${job}"`); results.push({ job, skipped: 'budget' }); continue; }
    say(`job: ${job}`);
    // `--submit-batch N`: tfjs-webgpu's WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE (dispatches per queue submit) for this job.
    const words = job.split(/\s+/);
    const sb = words.indexOf('--submit-batch');
    const submitBatch = sb >= 0 ? Number(words.splice(sb, 2)[1]) : DEFAULT_SUBMIT_BATCH;
    tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', submitBatch);
    // `--no-fused`: the plain TF.js ops instead of src/backends/webgpu/fused-kernels.ts, to measure what fusing saves.
    const nf = words.indexOf('--no-fused');
    const fusedKernels = nf < 0;
    if (!fusedKernels) words.splice(nf, 1);
    setWebgpuFusedKernels(fusedKernels);
    try {
      const { result } = await runBench(parseArgs(words), report);
      results.push({ job, submitBatch, fusedKernels, ...result });
      say(`→ baseline ${result.baselineSeconds.toFixed(2)} s, TGATE ${result.tgateSeconds.toFixed(2)} s, ${result.speedup.toFixed(3)}× (MAC ratio ${result.loopMacRatio.toFixed(3)}×, ÷ ${result.speedupOverMacRatio.toFixed(3)}), forward b2 ${result.forwardSecondsBatch2.toFixed(3)} s, b1 ${result.forwardSecondsBatch1.toFixed(3)} s, ${result.forwardGflops.toFixed(0)} GFLOP/s vs matMul ${result.matmulGflops.toFixed(0)}`);
    } catch (e) {
      results.push({ job, error: e instanceof Error ? e.message : String(e) });
      say(`job failed: ${e instanceof Error ? e.stack : e}`);
    }
    save();
    // runBench's model.dispose() frees the pool; a job that failed before it leaves the pool to free here.
    const freed = releaseWebgpuBufferPool();
    if (freed > 0) say(`released ${(freed / 1024 ** 3).toFixed(2)} GiB of pooled GPU buffers`);
  }
  say('done');
}

main().then(() => process.exit(0), (e) => { console.error(e); save(); process.exit(1); });
