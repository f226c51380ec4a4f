/**
 * The WebGPU backend's set-up: its kernel set (backends/kernels.ts) and the buffer-pool release after every
 * Module.dispose().
 *
 * On WebGPU a UNet forward is bound by per-dispatch cost (~80–100 µs of CPU through Dawn), not arithmetic,
 * so every entry here turns several dispatches into one: TF.js's own batchNorm and fused GEMMs always, our
 * fused norm/SiLU/GEGLU and attention kernels (./fused-kernels.ts, ./attention-kernel.ts) unless turned off.
 * The bias inside the GEMM is kept to WebGPU: tfjs-backend-cpu's fused kernels would bypass the faster ones
 * backends/cpu-fast registers. The kernels that read float16 weights (./half-kernels.ts) are always there:
 * such weights have no other reader.
 */
import * as tf from '@tensorflow/tfjs-core';
import { onModuleDispose } from '../../nn/module.js';
import { registerKernels, type BackendKernels } from '../kernels.js';
import { releaseWebgpuBufferPool } from './buffer-pool.js';
import { gegluWebgpu, groupNormWebgpu, siluWebgpu } from './fused-kernels.js';
import { attentionWebgpu } from './attention-kernel.js';
import { conv2dHalfWebgpu, gatherHalfWebgpu, matMulHalfWebgpu } from './half-kernels.js';
import { checkBinding } from './bindings.js';

const TF_FUSED: BackendKernels = {
  // One batchNorm dispatch instead of six; the statistics are lifted to x's rank, since the kernel needs it.
  normalize: (x, mean, variance, eps, scale, offset) => tf.tidy(() => {
    const r = x.rank;
    const asRank = (t: tf.Tensor) => (t.rank === r ? t : t.reshape([...Array(r - t.rank).fill(1), ...t.shape]));
    return tf.batchNorm(x, mean, variance, offset && asRank(offset), scale && asRank(scale), eps);
  }),
  matMulBias: (a, b, bias) => tf.fused.matMul({ a, b: checkBinding(b, 'a Linear weight'), bias }) as tf.Tensor2D,
  conv2dBias: (x, filter, strides, pad, bias) => tf.fused.conv2d({ x, filter: checkBinding(filter, 'a Conv2d weight'), strides, pad, bias }),
  matMulHalf: matMulHalfWebgpu,
  conv2dHalf: conv2dHalfWebgpu,
  gatherHalf: gatherHalfWebgpu,
};

const WITH_OURS: BackendKernels = {
  ...TF_FUSED, groupNorm: groupNormWebgpu, silu: siluWebgpu, geglu: gegluWebgpu,
  attention: (q, k, v, heads, scale, bias) => attentionWebgpu(q, k, v, heads, scale, bias) as tf.Tensor3D | null,
};

let fused = (typeof process !== 'undefined' ? process.env?.TGATE_WEBGPU_FUSED : undefined) !== '0';
let installed = false;

function register(): void {
  registerKernels('webgpu', fused ? WITH_OURS : TF_FUSED);
}

/**
 * Turns our fused kernels (GroupNorm/LayerNorm with SiLU and addend, SiLU, GEGLU) on or off (env
 * TGATE_WEBGPU_FUSED=0 sets off initially), so a benchmark can compare both paths in one run. Other
 * backends never use them.
 */
export function setWebgpuFusedKernels(on: boolean): void {
  fused = on;
  if (installed) register();
}

/** Registers the WebGPU kernels and the buffer-pool release; idempotent (backends/select.ts). */
export function installWebgpu(): void {
  if (installed) return;
  installed = true;
  register();
  onModuleDispose(releaseWebgpuBufferPool);
}
