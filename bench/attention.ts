/**
 * Attention microbenchmark: the batched path of src/attention/sdpa.ts against per-head 2-D matMuls, at UNet
 * attention shapes (why `auto` picks per-head on wasm for large score matrices: docs/BENCHMARKS.md, "Attention
 * strategies on wasm"). `tsx bench/attention.ts [--backend wasm] [--tokens 256,1024]`.
 */
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import { activeBackend, initBackend, type BackendName } from '../src/backends/index.js';
import '../src/nn/module.js';
import { scaledDotProductAttention, type SdpaStrategy } from '../src/attention/sdpa.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

/** Median seconds of `fn` (result read back through one element so the work is really done). */
async function time(fn: () => tf.Tensor, reps: number): Promise<number> {
  const ts: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const t0 = performance.now();
    const out = fn();
    await out.slice(Array(out.rank).fill(0), Array(out.rank).fill(1)).data();
    out.dispose();
    if (r > 0) ts.push((performance.now() - t0) / 1000); // first run warms up kernels
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm') as BackendName;
  await initBackend(backend, { quiet: true });
  const cpus = os.cpus();
  console.log(`machine: ${cpus[0]?.model} × ${cpus.length} cores; backend ${activeBackend()}`);
  const reps = Number(arg('reps', '3'));
  const n = 1024;
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  const mm = await time(() => tf.matMul(a, b), reps);
  console.log(`matMul 1024³: ${(2 * n ** 3 / mm / 1e9).toFixed(1)} GFLOP/s`);
  tf.dispose([a, b]);
  const tokens = arg('tokens', '256,1024,4096').split(',').map(Number);
  const rows: string[] = ['| case | tokens Nq×Nk | heads×d | batched GFLOP/s | per-head GFLOP/s | speed-up |', '|---|---|---|---|---|---|'];
  for (const nq of tokens) {
    for (const [label, nk, c, heads] of [['self', nq, 320, 8], ['cross', 77, 320, 8]] as const) {
      const q = tf.randomNormal([2, nq, c], 0, 1, 'float32', 3);
      const k = tf.randomNormal([2, nk, c], 0, 1, 'float32', 4);
      const v = tf.randomNormal([2, nk, c], 0, 1, 'float32', 5);
      const flops = 2 * 2 * 2 * nq * nk * c; // QKᵀ and PV, batch 2
      const res: number[] = [];
      for (const strategy of ['batched', 'per-head'] as SdpaStrategy[]) {
        const s = await time(() => scaledDotProductAttention(q, k, v, { heads, scale: (c / heads) ** -0.5, strategy }), nq >= 4096 ? 1 : reps);
        res.push(flops / s / 1e9);
      }
      rows.push(`| ${label} | ${nq}×${nk} | ${heads}×${c / heads} | ${res[0].toFixed(2)} | ${res[1].toFixed(2)} | ${(res[1] / res[0]).toFixed(2)}× |`);
      console.log(rows[rows.length - 1]);
      tf.dispose([q, k, v]);
    }
  }
  console.log(rows.join('\n'));
}

main().catch((e) => { console.error(e); process.exit(1); });
