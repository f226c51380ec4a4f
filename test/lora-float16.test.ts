/**
 * LoRA fused into float16 weights (packed halves, nn/packed-weight.ts), on cpu where the halves are only held, not
 * run (the forwards on WebGPU are in lora-controlnet-webgpu.test.ts): the fused halves are the float32 fused
 * weights rounded to halves (within the rounding of the original and of the sum), the originals kept are the
 * halves (2 bytes a parameter), and unfuse writes back every half bit for bit.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, relL2, useBackend } from './support/helpers.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { loadWeightsInto } from '../src/io/component-source.js';
import { weightInOurLayout } from '../src/nn/streamed-weights.js';
import { fromHalves, f16BitsToF32, f32ToF16Bits } from '../src/nn/float16.js';
import { LoraSet } from '../src/lora/lora-set.js';

const UNET = fixture('pipelines/sd15_tiny/unet');
const PEFT = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');

test('half → float32 → half gives every half back (NaNs stay NaN)', () => {
  const bad: number[] = [];
  for (let h = 0; h < 0x10000; h++) {
    const v = f16BitsToF32(h);
    const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (nan ? !Number.isNaN(v) : f32ToF16Bits(v) !== h) bad.push(h);
  }
  expect(bad).toEqual([]);
  expect(f16BitsToF32(0x3c00)).toBe(1);
  expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
  expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
});

test('fusing into float16 weights: W + Δ in float32 from the halves, rounded once; unfuse restores every half', async () => {
  await useBackend('cpu');
  const cfg = JSON.parse(readFileSync(`${UNET}/config.json`, 'utf8')) as Record<string, unknown>;
  const u16 = UNet2DConditionModel.fromConfig(cfg);
  u16.setWeightDtype('float16'); // held only: cpu cannot run halves, which is not needed to fuse
  await loadWeightsInto(u16, UNET);
  const u32 = await UNet2DConditionModel.fromPretrained(UNET);
  const packed = [...u16.namedParameters()].filter(([, p]) => p.packed);
  const before = new Map(await Promise.all(packed.map(async ([k, p]) => [k, await p.packed!.readHalves()] as const)));
  const tensors = tf.memory().numTensors;
  const l16 = new LoraSet(() => ({ unet: u16 }));
  const l32 = new LoraSet(() => ({ unet: u32 }));
  await l16.load(PEFT, { scale: 0.8, components: ['unet'] });
  await l32.load(PEFT, { scale: 0.8, components: ['unet'] });
  await l16.fuse();
  await l32.fuse();
  const w32 = new Map(u32.namedParameters());
  let changed = 0;
  let worst = 0;
  let originals = 0;
  for (const [k, p] of packed) {
    const now = await p.packed!.readHalves();
    if (Buffer.compare(Buffer.from(now.buffer), Buffer.from(before.get(k)!.buffer)) === 0) continue;
    changed++;
    originals += 2 * p.size;
    const got = new Float32Array(now.length);
    fromHalves(now, got);
    const t = weightInOurLayout(w32.get(k)!);
    worst = Math.max(worst, relL2(got, t.dataSync() as Float32Array));
    t.dispose();
  }
  console.log(`float16 fuse: ${changed} weights changed, worst rel-L2 against the float32 fuse ${worst.toExponential(2)}; originals kept ${l16.fusedOriginalBytes} bytes`);
  expect(changed).toBe(l16.list()[0].modules.unet);
  expect(worst).toBeLessThanOrEqual(1e-3);
  expect(l16.fusedOriginalBytes).toBe(originals);
  await l16.unfuse();
  await l16.unload();
  for (const [k, p] of packed) {
    const now = await p.packed!.readHalves();
    expect([k, Buffer.compare(Buffer.from(now.buffer), Buffer.from(before.get(k)!.buffer))]).toEqual([k, 0]);
  }
  await l32.unfuse();
  await l32.unload();
  expect(tf.memory().numTensors).toBe(tensors);
  u16.dispose();
  u32.dispose();
}, 120_000);
