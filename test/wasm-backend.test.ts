/**
 * The wasm backend in Node (src/backends/wasm/node.ts, src/backends/wasm/heap.ts): XNNPACK's thread pool gets the
 * threads asked for and gives the single-threaded results; the process still exits; a tensor that does not
 * fit in the heap is a WasmHeapError before anything is written, and the backend goes on working.
 * Each thread count runs in a child process, since the wasm backend is initialised once per process.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { relL2, useBackend } from './support/helpers.js';
import { wasmThreadsWanted } from '../src/backends/wasm/node.js';
import { seededGemm } from './support/seeded-gemm.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

interface CheckReport {
  details: string; threads: number; workerBefore: string; workerAfter: string; matMul: number[]; conv: number[];
  heap: { full: string; over4GiB: string; afterwards: number; leaked: number };
}

function runCheck(threads: number): Promise<CheckReport> {
  return new Promise((resolve, reject) => {
    // The timeout is also the check that pool threads do not keep the process alive.
    execFile(process.execPath, ['--import', 'tsx', path.join(HERE, 'support', 'wasm-backend-check.ts'), String(threads)],
      { cwd: path.join(HERE, '..'), timeout: 90000, maxBuffer: 64 * 2 ** 20 },
      (err, stdout, stderr) => (err ? reject(new Error(`wasm check (${threads} threads) failed: ${err.message}\n${stderr.slice(-3000)}`)) : resolve(JSON.parse(stdout))));
  });
}

let one: CheckReport;
let two: CheckReport;
beforeAll(async () => {
  [one, two] = [await runCheck(1), await runCheck(2)];
}, 200000);

test('the pool has the threads asked for, and Worker is left as it was', () => {
  expect(one.threads).toBe(1);
  expect(two.threads).toBe(2);
  expect(two.details).toMatch(/2 threads/);
  expect(two.workerAfter).toBe(two.workerBefore);
});

test('two threads give the single-threaded matMul and conv2d, and both match the cpu backend', async () => {
  expect(relL2(two.matMul, one.matMul)).toBeLessThanOrEqual(1e-6);
  expect(relL2(two.conv, one.conv)).toBeLessThanOrEqual(1e-6);
  await useBackend('cpu');
  const { matMul, conv } = await seededGemm();
  for (const r of [one, two]) {
    expect(relL2(r.matMul, matMul)).toBeLessThanOrEqual(1e-5);
    expect(relL2(r.conv, conv)).toBeLessThanOrEqual(1e-5);
  }
});

test('a tensor that does not fit the heap is a WasmHeapError naming its size, and nothing leaks', () => {
  for (const r of [one, two]) {
    expect(r.heap.full).toMatch(/^WasmHeapError: wasm heap exhausted: a tensor of 2\.00 GiB does not fit .*offload/);
    // From 4 GiB up the size would reach malloc wrapped to 32 bits (a small block, overrun): refused first.
    expect(r.heap.over4GiB).toMatch(/^WasmHeapError: .*a tensor of 4\.30 GiB/);
    expect(r.heap.afterwards).toBe(2 * 1024 * 1024);
    expect(r.heap.leaked).toBe(0);
  }
});

test('thread counts outside 1..8 are refused with the value', () => {
  expect(wasmThreadsWanted(3)).toBe(3);
  expect(() => wasmThreadsWanted(0)).toThrow(/1 to 8, got 0/);
  expect(() => wasmThreadsWanted(2.5)).toThrow(/got 2\.5/);
  const saved = process.env.TGATE_WASM_THREADS;
  process.env.TGATE_WASM_THREADS = 'many';
  try {
    expect(() => wasmThreadsWanted()).toThrow(/TGATE_WASM_THREADS=many/);
  } finally {
    if (saved === undefined) delete process.env.TGATE_WASM_THREADS;
    else process.env.TGATE_WASM_THREADS = saved;
  }
});
