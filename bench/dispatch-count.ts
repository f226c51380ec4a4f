/**
 * WebGPU dispatches per denoiser forward, by kind of step: a batch-2 forward (baseline, and TGATE before the
 * gate), a batch-1 forward, and TGATE's batch-1 step after the gate (cross-attention reused, self-attention
 * computed). Counts do not depend on the weights or the size, so this runs anywhere Dawn does (Mesa included):
 *   npx tsx bench/dispatch-count.ts --model sd15 [--height 64 --width 64]
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backends/index.js';
import { modelFromConfig } from '../src/models/registry.js';
import { setAttnProcessor } from '../src/attention/registry.js';
import { TgateProcessor, type TgateContext, type TgateFlags } from '../src/attention/tgate.js';
import { countDispatches } from './run-bench.js';
import { parseArgs } from './bench-args.js';
import { loadConfig } from './macs.js';
import type { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';

const a = parseArgs(process.argv.slice(2));
if (a.model === 'pixart' || a.model === 'tiny-shapes') throw new Error('dispatch-count: UNet models only (sd15, sd21, sdxl)');
await initBackend('webgpu', { quiet: true });
const cfg = loadConfig(a.model);
const unet = modelFromConfig(cfg) as UNet2DConditionModel;
for (const [, p] of unet.namedParameters()) p.set(tf.zeros(p.shape)); // values do not change what is dispatched
const sdxl = a.model === 'sdxl';
const forward = (batch: number, tgate?: TgateFlags) => {
  const counter = countDispatches()!;
  const out = tf.tidy(() => unet.forward({
    sample: tf.zeros([batch, cfg.in_channels as number, a.height / 8, a.width / 8]), timestep: 999,
    encoderHiddenStates: tf.zeros([batch, 77, cfg.cross_attention_dim as number]),
    ...(sdxl ? { textEmbeds: tf.zeros([batch, 1280]), timeIds: tf.zeros([batch, 6]) } : {}),
    attnContext: (tgate ? { tgate } : {}) as TgateContext,
  }));
  counter.stop();
  return { out, count: counter.count };
};
const proc = new TgateProcessor();
setAttnProcessor(unet, proc);
const rows: Record<string, number> = {};
for (const [name, batch, flags] of [
  ['batch 2', 2, undefined], ['batch 1', 1, undefined],
  ['TGATE cache step (batch 1)', 1, { caCache: true, caReuse: false, saCache: true, saReuse: false, keepShape: true }],
  ['TGATE after the gate (batch 1)', 1, { caCache: false, caReuse: true, saCache: true, saReuse: false, keepShape: true }],
] as const) {
  const { out, count } = forward(batch, flags);
  await out.data();
  out.dispose();
  rows[name] = count;
}
proc.reset();
console.log(JSON.stringify({ model: a.model, dispatchesPerForward: rows }));
process.exit(0);
