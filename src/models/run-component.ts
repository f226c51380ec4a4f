/**
 * Runs any component on inputs named and laid out as diffusers' (or transformers') forward arguments (NCHW),
 * returning outputs named the same way. `tgate forward` and `tgate convert --verify` both call it, so the
 * knowledge of how each class is called lives here only.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { UNet2DConditionModel } from './unet-2d-condition.js';
import { PixArtTransformer2DModel } from './pixart-transformer.js';
import { AutoencoderKL } from './autoencoder-kl.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from './clip-text.js';
import { T5EncoderModel } from './t5-encoder.js';

export type NamedTensors = Record<string, tf.Tensor>;

function need(inputs: NamedTensors, name: string, cls: string): tf.Tensor {
  const t = inputs[name];
  if (!t) throw new Error(`${cls} needs an input tensor named "${name}" (inputs present: ${Object.keys(inputs).join(', ') || 'none'})`);
  return t;
}

/** Runs the component on the named inputs and returns the named outputs. */
export function runComponent(model: Module, inputs: NamedTensors, mode: 'decode' | 'encode' = 'decode'): NamedTensors {
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
    const out: NamedTensors = { last_hidden_state: o.lastHiddenState, penultimate_hidden_state: hs[hs.length - 2] };
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
