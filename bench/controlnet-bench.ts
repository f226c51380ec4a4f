/**
 * The ControlNet of `npm run bench -- --controlnet`: diffusers' `ControlNetModel.from_unet(unet)` for the
 * benchmark's UNet (full size for sd15/sd21/sdxl), run at every step before the UNet with the same batch,
 * conditioning and TGATE processors, its residuals added to the UNet's skips, as the ControlNet pipelines do
 * (src/pipelines/controlnet-step.ts). Its MACs (`controlnetMacs`) join the UNet's in the loop's MAC ratio
 * (bench/macs.ts `controlnetGenerationMacs`).
 *
 * Weights: `from_unet` copies the UNet's conv_in, time embedding, down blocks and mid block; here the ControlNet
 * holds the UNet's tensors themselves for those (a forward's cost does not depend on the values), so SD-1.5 with
 * its ControlNet fits wasm's 4 GiB heap: 3.4 GB of UNet weights, plus only what is the ControlNet's own (its
 * conditioning embedding and zero convolutions: 12.6 M of its 361 M parameters for SD-1.5), which the caller fills.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ControlNetModel, controlnetConfigFromUnet } from '../src/models/controlnet.js';
import { modelMacs, type ForwardMacs } from '../src/models/registry.js';
import type { Module, Parameter } from '../src/nn/module.js';
import type { AttnContext } from '../src/attention/processor.js';
import { streamsWeight } from '../src/layers/gemm.js';
import { streamedWeight } from '../src/nn/streamed-weights.js';

export interface BenchControlNet {
  model: ControlNetModel;
  /** Per-sample MACs of one forward (the conditioning embedding at the image's resolution included). */
  macs: ForwardMacs;
  /** Its parameters that are its own (not the UNet's tensors): fill these. */
  own: Set<Parameter>;
  /** Residuals for a UNet call on `sample` (batch 1 or 2) with the UNet's conditioning. */
  residuals(o: { sample: tf.Tensor; timestep: number; encoderHiddenStates: tf.Tensor; textEmbeds?: tf.Tensor; timeIds?: tf.Tensor; attnContext: AttnContext }): {
    downBlockAdditionalResiduals: tf.Tensor[]; midBlockAdditionalResidual: tf.Tensor;
  };
  /** Frees its own weights and the conditioning image (the UNet's stay). */
  dispose(): void;
}

/**
 * Builds the ControlNet of a loaded UNet (`unetConfig` its config.json), holding the UNet's weight tensors where
 * from_unet copies them. The conditioning embedding downsamples by the VAE's factor (`latentScale`: 3 stride-2
 * steps for 8, 2 for 4).
 */
export function benchControlNet(unet: Module, unetConfig: Record<string, unknown>, o: { height: number; width: number; latentScale: number; seed: number }): BenchControlNet {
  const stages = Math.log2(o.latentScale);
  const model = ControlNetModel.fromConfig(controlnetConfigFromUnet(unetConfig, { conditioningEmbeddingOutChannels: [16, 32, 96, 256].slice(0, stages + 1) }));
  const theirs = new Map(unet.namedParameters());
  const shared: Parameter[] = [];
  const own = new Set<Parameter>();
  for (const [k, p] of model.namedParameters()) {
    const u = theirs.get(k);
    if (u && /^(conv_in|time_embedding|add_embedding|down_blocks|mid_block)\./.test(k) && u.shape.join() === p.shape.join() && (u.value || u.packed)) {
      // A weight the layers stream is converted in place on first use, replacing the tensor: convert it now, so
      // both models hold the tensor they will keep using.
      if (!u.packed && (u.layout === 'linear' || u.layout === 'conv') && streamsWeight(u.size)) streamedWeight(u);
      p.dtype = u.dtype;
      p.value = u.value;
      p.packed = u.packed;
      shared.push(p);
    } else {
      own.add(p);
    }
  }
  const image = tf.randomUniform([2, 3, o.height, o.width], 0, 1, 'float32', o.seed + 21);
  const one = image.slice(0, 1);
  return {
    model,
    own,
    macs: modelMacs(model, { height: o.height, width: o.width, latentScale: o.latentScale }),
    residuals: (x) => {
      const out = model.forward({ ...x, controlnetCond: x.sample.shape[0] === 2 ? image : one, conditioningScale: 0.8 });
      return { downBlockAdditionalResiduals: out.downBlockResSamples, midBlockAdditionalResidual: out.midBlockResSample };
    },
    dispose: () => {
      for (const p of shared) { p.value = null; p.packed = null; }
      model.dispose();
      tf.dispose([image, one]);
    },
  };
}
