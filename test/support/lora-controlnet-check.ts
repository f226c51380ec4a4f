/**
 * LoRA and ControlNet on the backend now running, for test/webgpu-child.ts (WebGPU cannot run under jest, and
 * cannot read synchronously in Node: every read here is async, as fuse/unfuse's are): the reference LoRA forwards
 * from both file formats, unfused and fused, unfuse restoring every weight's bytes, the ControlNet forward
 * with the UNet taking its residuals, and LoRA on float16 weights (fused from the halves, unfuse restoring them).
 */
import * as tf from '@tensorflow/tfjs-core';
import { UNet2DConditionModel } from '../../src/models/unet-2d-condition.js';
import { CLIPTextModel } from '../../src/models/clip-text.js';
import { ControlNetModel } from '../../src/models/controlnet.js';
import type { Module } from '../../src/nn/module.js';
import { LoraSet } from '../../src/lora/lora-set.js';
import { openSafetensors } from '../../src/io/node-source.js';
import { relL2 } from './helpers.js';

const F = 'test/fixtures/';

async function load(rel: string): Promise<Record<string, tf.Tensor>> {
  const f = await openSafetensors(F + rel);
  const out: Record<string, tf.Tensor> = {};
  for (const k of f.keys()) out[k] = await f.tensor(k);
  await f.close();
  return out;
}

const err = async (t: tf.Tensor, ref: tf.Tensor) => relL2(await t.data() as Float32Array, await ref.data() as Float32Array);

async function weights(m: Module): Promise<Float32Array[]> {
  return Promise.all([...m.namedParameters()].map(async ([, p]) => (await p.t.data() as Float32Array).slice()));
}

export interface LoraControlnetReport {
  /** rel-L2 against the reference, by case. */
  errors: Record<string, number>;
  /** Parameters whose bytes differ after load, fuse, unfuse and unload. */
  changedWeights: number;
  leakedTensors: number;
  /** float16 weights: rel-L2 against the reference (unfused, fused) and of fused against unfused; halves changed after unfuse; leaks. */
  half: { errors: Record<string, number>; fusedVsUnfused: Record<string, number>; loraEffect: number; changedWeights: number; leakedTensors: number };
}

/** The halves of every float16 parameter (read back from the backend). */
async function halves(m: Module): Promise<Uint16Array[]> {
  return Promise.all([...m.namedParameters()].filter(([, p]) => p.packed).map(([, p]) => p.packed!.readHalves()));
}

/** The reference LoRA at scale 0.5 on float16 UNet and CLIP weights: unfused, fused, then unfused and unloaded. */
async function halfCheck(g: Record<string, tf.Tensor>): Promise<LoraControlnetReport['half']> {
  const unet = await UNet2DConditionModel.fromPretrained(`${F}pipelines/sd15_tiny/unet`, { weightDtype: 'float16' });
  const te = await CLIPTextModel.fromPretrained(`${F}pipelines/sd15_tiny/text_encoder`, { weightDtype: 'float16' });
  const before = [...await halves(unet), ...await halves(te)];
  const tensors = tf.memory().numTensors;
  const run = () => ({
    u: unet.forward({ sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'] }),
    t: te.forward({ inputIds: g['in.input_ids'], outputHiddenStates: false }),
  });
  const plain = run();
  const lora = new LoraSet(() => ({ unet, text_encoder: te }));
  await lora.load(`${F}ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors`, { scale: 0.5 });
  const unfused = run();
  await lora.fuse();
  const fused = run();
  const errors: Record<string, number> = {};
  const fusedVsUnfused: Record<string, number> = {};
  for (const [mode, o] of [['unfused', unfused], ['fused', fused]] as const) {
    errors[`float16 ${mode} unet`] = await err(o.u, g['unet_out.scale0.5']);
    errors[`float16 ${mode} text encoder`] = await err(o.t.lastHiddenState, g['te_last_hidden_state.scale0.5']);
  }
  fusedVsUnfused.unet = await err(fused.u, unfused.u);
  fusedVsUnfused['text encoder'] = await err(fused.t.lastHiddenState, unfused.t.lastHiddenState);
  const loraEffect = await err(plain.u, fused.u);
  await lora.unfuse();
  await lora.unload();
  const after = [...await halves(unet), ...await halves(te)];
  const changedWeights = after.filter((v, i) => Buffer.compare(Buffer.from(v.buffer), Buffer.from(before[i].buffer)) !== 0).length;
  for (const o of [plain, unfused, fused]) tf.dispose([o.u, o.t.lastHiddenState, o.t.pooledOutput ?? []]);
  const leakedTensors = tf.memory().numTensors - tensors;
  unet.dispose();
  te.dispose();
  return { errors, fusedVsUnfused, loraEffect, changedWeights, leakedTensors };
}

export async function loraControlnetCheck(): Promise<LoraControlnetReport> {
  const errors: Record<string, number> = {};
  const g = await load('ext2/lora/forward.safetensors');
  const c = await load('ext2/controlnet/controlnet_forward.safetensors');
  const unet = await UNet2DConditionModel.fromPretrained(`${F}pipelines/sd15_tiny/unet`);
  const te = await CLIPTextModel.fromPretrained(`${F}pipelines/sd15_tiny/text_encoder`);
  const before = await weights(unet);
  const tensors = tf.memory().numTensors;
  const lora = new LoraSet(() => ({ unet, text_encoder: te }));
  for (const file of ['pytorch_lora_weights', 'kohya_lora']) {
    await lora.load(`${F}ext2/models/sd15_tiny_lora/${file}.safetensors`, { scale: 0.5 });
    for (const mode of ['unfused', 'fused']) {
      if (mode === 'fused') await lora.fuse();
      const u = unet.forward({ sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'] });
      const o = te.forward({ inputIds: g['in.input_ids'], outputHiddenStates: false });
      errors[`${file} ${mode} unet`] = await err(u, g['unet_out.scale0.5']);
      errors[`${file} ${mode} text encoder`] = await err(o.lastHiddenState, g['te_last_hidden_state.scale0.5']);
      tf.dispose([u, o.lastHiddenState, o.pooledOutput ?? []]);
    }
    await lora.unfuse();
    await lora.unload();
  }
  const after = await weights(unet);
  const changedWeights = after.filter((v, i) => Buffer.compare(Buffer.from(v.buffer), Buffer.from(before[i].buffer)) !== 0).length;
  const leakedTensors = tf.memory().numTensors - tensors;

  const cn = await ControlNetModel.fromPretrained(`${F}ext2/models/sd15_tiny_controlnet`);
  const x = { sample: c['in.sample'], timestep: c['in.timestep'], encoderHiddenStates: c['in.encoder_hidden_states'] };
  const out = cn.forward({ ...x, controlnetCond: c['in.controlnet_cond'] });
  for (let k = 0; k < out.downBlockResSamples.length; k++) errors[`controlnet down_block_res_samples.${k}`] = await err(out.downBlockResSamples[k], c[`down_block_res_samples.${k}`]);
  errors['controlnet mid_block_res_sample'] = await err(out.midBlockResSample, c.mid_block_res_sample);
  const u = unet.forward({ ...x, downBlockAdditionalResiduals: out.downBlockResSamples, midBlockAdditionalResidual: out.midBlockResSample });
  errors['unet_out_with_residuals'] = await err(u, c.unet_out_with_residuals);
  tf.dispose([u, ...out.downBlockResSamples, out.midBlockResSample, ...Object.values(c)]);
  [unet, te, cn].forEach((m) => m.dispose());
  const half = await halfCheck(g);
  tf.dispose(Object.values(g));
  return { errors, changedWeights, leakedTensors, half };
}
