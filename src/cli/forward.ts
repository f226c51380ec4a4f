/**
 * `tgate forward <component_dir> --inputs IN.safetensors --output OUT.safetensors`: runs one component on
 * saved inputs named and laid out as diffusers' forward arguments (NCHW), so a conversion can be checked
 * against PyTorch dumps.
 */
import type { CommandModule } from 'yargs';
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { loadModel } from '../pipelines/load.js';
import { readComponentConfig } from '../io/diffusers-folder.js';
import { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import { PixArtTransformer2DModel } from '../models/pixart-transformer.js';
import { AutoencoderKL } from '../models/autoencoder-kl.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text.js';
import { T5EncoderModel } from '../models/t5-encoder.js';
import { backendOption, readTensors, setupBackend, writeTensors } from './common.js';

type Inputs = Record<string, tf.Tensor>;

function need(inputs: Inputs, name: string, cls: string): tf.Tensor {
  const t = inputs[name];
  if (!t) throw new Error(`${cls} needs an input tensor named "${name}" (inputs present: ${Object.keys(inputs).join(', ') || 'none'})`);
  return t;
}

/** Runs the component on the named inputs and returns the named outputs. */
export function runComponent(model: Module, inputs: Inputs, mode: 'decode' | 'encode' = 'decode'): Inputs {
  const cls = model.constructor.name;
  if (model instanceof UNet2DConditionModel) {
    return {
      sample: model.forward({
        sample: need(inputs, 'sample', cls), timestep: need(inputs, 'timestep', cls), encoderHiddenStates: need(inputs, 'encoder_hidden_states', cls),
        textEmbeds: inputs.text_embeds, timeIds: inputs.time_ids, timestepCond: inputs.timestep_cond, encoderAttentionMask: inputs.encoder_attention_mask,
      }),
    };
  }
  if (model instanceof PixArtTransformer2DModel) {
    return {
      sample: model.forward({
        hiddenStates: need(inputs, 'hidden_states', cls), timestep: need(inputs, 'timestep', cls), encoderHiddenStates: need(inputs, 'encoder_hidden_states', cls),
        encoderAttentionMask: inputs.encoder_attention_mask, resolution: inputs.resolution, aspectRatio: inputs.aspect_ratio,
      }),
    };
  }
  if (model instanceof AutoencoderKL) {
    if (mode === 'decode') return { sample: model.decode(need(inputs, 'latents', cls)) };
    const d = model.encode(need(inputs, 'sample', cls));
    const out = { 'latent_dist.mean': d.mean, 'latent_dist.logvar': d.logvar };
    d.std.dispose();
    return out;
  }
  if (model instanceof CLIPTextModel || model instanceof CLIPTextModelWithProjection) {
    const o = model.forward({ inputIds: need(inputs, 'input_ids', cls), outputHiddenStates: true });
    const hs = o.hiddenStates!;
    const out: Inputs = { last_hidden_state: o.lastHiddenState, penultimate_hidden_state: hs[hs.length - 2] };
    if (o.pooledOutput) out.pooler_output = o.pooledOutput;
    if (o.textEmbeds) out.text_embeds = o.textEmbeds;
    hs.forEach((t) => { if (!Object.values(out).includes(t)) t.dispose(); });
    return out;
  }
  if (model instanceof T5EncoderModel) {
    return { last_hidden_state: model.forward({ inputIds: need(inputs, 'input_ids', cls), attentionMask: inputs.attention_mask }).lastHiddenState };
  }
  throw new Error(`tgate forward does not know how to run ${cls}`);
}

export const forwardCommand: CommandModule<object, { dir: string; inputs: string; output: string; backend: string; mode: 'decode' | 'encode'; variant?: string }> = {
  command: 'forward <dir>',
  describe: 'Run one model component (class from config.json) on saved inputs and save its outputs',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'component folder (config.json + weights)' })
    .option('inputs', { type: 'string', demandOption: true, describe: 'safetensors with diffusers-named inputs (NCHW)' })
    .option('output', { type: 'string', demandOption: true, describe: 'safetensors file to write' })
    .option('mode', { choices: ['decode', 'encode'] as const, default: 'decode' as const, describe: 'AutoencoderKL only' })
    .option('variant', { type: 'string', describe: 'weight variant, e.g. fp16' })
    .options(backendOption) as never,
  handler: async (a) => {
    await setupBackend(a.backend);
    const cfg = await readComponentConfig(a.dir);
    const model = await loadModel(a.dir, a.variant);
    const inputs = await readTensors(a.inputs);
    try {
      const out = runComponent(model, inputs, a.mode);
      await writeTensors(a.output, out);
      console.log(`${cfg._class_name}: wrote ${Object.entries(out).map(([k, t]) => `${k} [${t.shape}]`).join(', ')} to ${a.output}`);
      Object.values(out).forEach((t) => t.dispose());
    } finally {
      Object.values(inputs).forEach((t) => t.dispose());
      model.dispose();
    }
  },
};
