/**
 * The fused WebGPU kernels (src/backends/webgpu/fused-kernels.ts) against the plain TF.js ops they replace, run in
 * the WebGPU child (test/webgpu-child.ts): same inputs, fused on and off, relative L2 error of each pair, and
 * the tensor count after both.
 */
import * as tf from '@tensorflow/tfjs-core';
import { GroupNorm, LayerNorm } from '../src/layers/norm.js';
import { GeluProjection } from '../src/layers/feedforward.js';
import { silu } from '../src/layers/activations.js';
import { Linear } from '../src/layers/linear.js';
import type { Module } from '../src/nn/module.js';
import { relL2 } from './support/helpers.js';
import { releaseWebgpuBufferPool, setWebgpuFusedKernels } from '../src/backends/index.js';
import { kernels } from '../src/backends/kernels.js';

/**
 * Bytes the pool held before and after {@link releaseWebgpuBufferPool}, whether compute still works after, and
 * the pooled buffers left once a model that ran a forward is disposed (Module.dispose releases the pool).
 */
export async function bufferPoolCheck(): Promise<{ freed: number; allocatedBefore: number; allocatedAfter: number; sumAfter: number; pooledAfterDispose: number }> {
  const manager = (tf.backend() as unknown as { bufferManager: { numBytesAllocated: number; numFreeBuffers: number } }).bufferManager;
  for (const n of [1000, 2000, 3000]) tf.tidy(() => tf.add(tf.ones([n]), 1));
  const allocatedBefore = manager.numBytesAllocated;
  const freed = releaseWebgpuBufferPool();
  const allocatedAfter = manager.numBytesAllocated;
  const s = tf.tidy(() => tf.sum(tf.add(tf.ones([2000]), 1)));
  const sumAfter = (await s.data())[0]!;
  s.dispose();
  const model = new Linear(256, 512);
  model.initRandom(1);
  const y = tf.tidy(() => model.forward(tf.ones([64, 256])));
  await y.data();
  y.dispose();
  model.dispose();
  return { freed, allocatedBefore, allocatedAfter, sumAfter, pooledAfterDispose: manager.numFreeBuffers };
}

export interface FusedReport {
  /** Case name → rel-L2 of fused vs plain. */
  relL2: Record<string, number>;
  /** Tensors alive after the checks minus before (0 = nothing leaked). */
  leaked: number;
  /** The WebGPU kernel set's entries with our fused kernels on and off (so a rel-L2 of 0 is not plain vs plain). */
  kernelsOn: string[];
  kernelsOff: string[];
}

// WebGPU in Node has no synchronous read-back.
async function both(f: () => tf.Tensor): Promise<number> {
  setWebgpuFusedKernels(false);
  const plain = f();
  setWebgpuFusedKernels(true);
  const fused = f();
  const e = relL2(await fused.data() as Float32Array, await plain.data() as Float32Array);
  tf.dispose([plain, fused]);
  return e;
}

function init<M extends Module>(m: M, seed: number): M {
  m.initRandom(seed, 0.5);
  // Offsets away from 1 and 0, so a swapped or missing affine term shows.
  for (const [, p] of m.namedParameters()) p.set(tf.tidy(() => tf.add(p.t, p.shape.length === 1 ? 0.3 : 0)));
  return m;
}

export async function fusedKernelCheck(): Promise<FusedReport> {
  setWebgpuFusedKernels(false);
  const kernelsOff = Object.keys(kernels()).sort();
  setWebgpuFusedKernels(true);
  const kernelsOn = Object.keys(kernels()).sort();
  const before = tf.memory().numTensors;
  const out: Record<string, number> = {};
  // Mean far from 0 (+3) makes a variance computed without subtracting the mean visibly wrong.
  const x = tf.tidy(() => tf.add(tf.randomNormal([2, 9, 7, 64], 0, 2, 'float32', 1), 3)) as tf.Tensor4D;
  const seq = tf.randomNormal([3, 77, 96], 0, 1, 'float32', 2);
  for (const groups of [32, 8, 1]) {
    const gn = init(new GroupNorm(groups, 64, 1e-5), groups);
    out[`GroupNorm ${groups} groups`] = await both(() => gn.forward(x));
    out[`GroupNorm ${groups} groups + SiLU`] = await both(() => gn.forwardAct(x, silu));
    gn.dispose();
  }
  const gnPlain = new GroupNorm(16, 64, 1e-6, false);
  out['GroupNorm without affine'] = await both(() => gnPlain.forward(x));
  const big = tf.randomNormal([1, 64, 64, 128], 1, 1, 'float32', 3);
  const gnBig = init(new GroupNorm(32, 128, 1e-6), 4);
  out['GroupNorm 64×64×128 (256-wide workgroups, separate normalising pass)'] = await both(() => gnBig.forwardAct(big, silu));
  const bigTemb = tf.randomNormal([1, 1, 1, 128], 0, 1, 'float32', 12);
  out['GroupNorm 64×64×128 + addend, separate normalising pass'] = await both(() => gnBig.forwardAct(big, silu, bigTemb));
  bigTemb.dispose();
  gnBig.dispose();
  // A resnet's norm2: the projected time embedding [B, 1, 1, C] is added inside the kernel.
  const temb = tf.randomNormal([2, 1, 1, 64], 0, 1, 'float32', 7);
  const gnAdd = init(new GroupNorm(32, 64, 1e-6), 8);
  out['GroupNorm + time-embedding addend + SiLU'] = await both(() => gnAdd.forwardAct(x, silu, temb));
  gnAdd.dispose();
  // 70000 rows: more workgroups than one dispatch dimension holds (65535).
  const rows = tf.randomNormal([70000, 8], 2, 1, 'float32', 9);
  const lnRows = init(new LayerNorm(8, 1e-5), 10);
  out['LayerNorm over 70000 rows'] = await both(() => lnRows.forward(rows));
  lnRows.dispose();
  const lnScaleOnly = init(new LayerNorm(96, 1e-5, true, false), 11);
  out['LayerNorm with weight, no bias'] = await both(() => lnScaleOnly.forward(seq));
  lnScaleOnly.dispose();
  tf.dispose([temb, rows]);
  const ln = init(new LayerNorm(96, 1e-5), 5);
  out.LayerNorm = await both(() => ln.forward(seq));
  ln.dispose();
  const lnPlain = new LayerNorm(96, 1e-6, false);
  out['LayerNorm without affine'] = await both(() => lnPlain.forward(seq));
  out.SiLU = await both(() => silu(seq));
  const geglu = init(new GeluProjection(96, 40, 'geglu'), 6);
  out.GEGLU = await both(() => geglu.forward(seq));
  geglu.dispose();
  tf.dispose([x, seq, big]);
  return { relL2: out, leaked: tf.memory().numTensors - before, kernelsOn, kernelsOff };
}
