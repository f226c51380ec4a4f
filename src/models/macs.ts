/**
 * Analytic multiply-accumulate (MAC) counts of one denoiser forward, from the model's resolved config,
 * counted the way the T-GATE paper's table does (thop): every nn.Conv2d and nn.Linear, i.e. output elements ×
 * (input channels × kernel area); attention's own matmuls (q kᵀ, p v) are functional calls thop does not
 * hook, so they are reported separately. bench/macs.ts turns these into whole generations with and
 * without TGATE. The ControlNet is counted the same way: its attentions are gated like the UNet's.
 */
import type { DownPathConfig, TextTimeConfig, UNet2DConditionConfig } from './unet-2d-condition-config.js';
import type { ControlNetConfig } from './controlnet-config.js';
import type { PixArtTransformerConfig } from './pixart-transformer.js';

/** MACs of one denoiser forward for ONE sample, split by what TGATE can skip. */
export interface ForwardMacs {
  /** Convolutions and linears outside the attention modules (ResNets, FF, projections, embeddings). */
  rest: number;
  /** to_q/to_k/to_v/to_out of self-attention. */
  selfLinear: number;
  /** to_q/to_k/to_v/to_out of cross-attention. */
  crossLinear: number;
  /** q kᵀ and p v of self-attention (not counted by thop). */
  selfMatmul: number;
  /** q kᵀ and p v of cross-attention (not counted by thop). */
  crossMatmul: number;
}

export interface MacOptions {
  /** Image size in pixels (latents are /latentScale). */
  height: number;
  width: number;
  /** VAE downsampling factor, pixels per latent: 8 for SD/SDXL/PixArt, 4 for the bundled tiny-shapes model. */
  latentScale?: number;
  /** Text tokens: 77 for CLIP, 120 for PixArt's T5. */
  textLen?: number;
}

const zero = (): ForwardMacs => ({ rest: 0, selfLinear: 0, crossLinear: 0, selfMatmul: 0, crossMatmul: 0 });
const conv = (n: number, cin: number, cout: number, k: number): number => n * cout * cin * k * k;
const lin = (n: number, cin: number, cout: number): number => n * cin * cout;

/** One BasicTransformerBlock stack (diffusers Transformer2DModel inside the UNet) at n tokens, width c. */
function spatialTransformer(m: ForwardMacs, n: number, c: number, layers: number, x: number, l: number): void {
  m.rest += 2 * lin(n, c, c); // proj_in, proj_out (1×1 conv or linear: same count)
  for (let i = 0; i < layers; i++) {
    m.selfLinear += 4 * lin(n, c, c);
    m.selfMatmul += 2 * n * n * c;
    m.crossLinear += 2 * lin(n, c, c) + 2 * lin(l, x, c);
    m.crossMatmul += 2 * n * l * c;
    m.rest += lin(n, c, 8 * c) + lin(n, 4 * c, c); // GEGLU: proj to 2·4c, then 4c → c
  }
}

function resnet(m: ForwardMacs, n: number, cin: number, cout: number, temb: number): void {
  m.rest += conv(n, cin, cout, 3) + lin(1, temb, cout) + conv(n, cout, cout, 3) + (cin !== cout ? conv(n, cin, cout, 1) : 0);
}

/** Transformer layers at resnet layer `j` of a block (one count for the block, or one per layer). */
const layersAt = (v: number | number[], j: number): number => (Array.isArray(v) ? v[j] : v);

/** Token counts per level of a down path (level i: the latents downsampled i times). */
type Tokens = (level: number) => number;

function levels(o: MacOptions): Tokens {
  const h0 = o.height / (o.latentScale ?? 8);
  const w0 = o.width / (o.latentScale ?? 8);
  return (level) => (h0 / 2 ** level) * (w0 / 2 ** level);
}

/** time_embedding (+ SDXL's add_embedding): linear_1 and linear_2 of each, on one row. */
function timeEmbedding(m: ForwardMacs, c: DownPathConfig & TextTimeConfig, temb: number): void {
  m.rest += lin(1, c.blockOutChannels[0], temb) + lin(1, temb, temb);
  if (c.additionEmbedType === 'text_time') m.rest += lin(1, c.projectionClassEmbeddingsInputDim!, temb) + lin(1, temb, temb);
}

/** The down blocks (resnets, spatial transformers, downsamplers), shared by the UNet and the ControlNet. */
function downPath(m: ForwardMacs, c: DownPathConfig, tokens: Tokens, temb: number, l: number): void {
  const boc = c.blockOutChannels;
  let prev = boc[0];
  for (let i = 0; i < boc.length; i++) {
    const n = tokens(i);
    for (let j = 0; j < c.layersPerBlock[i]; j++) {
      resnet(m, n, j === 0 ? prev : boc[i], boc[i], temb);
      if (c.downBlockTypes[i].startsWith('CrossAttn')) spatialTransformer(m, n, boc[i], layersAt(c.transformerLayersPerBlock[i], j), c.crossAttentionDim[i], l);
    }
    if (i < boc.length - 1) m.rest += conv(tokens(i + 1), boc[i], boc[i], 3);
    prev = boc[i];
  }
}

/** The mid block: resnet, (transformer, resnet), or a single resnet without attention. */
function midBlock(m: ForwardMacs, c: DownPathConfig, tokens: Tokens, temb: number, l: number, attention: boolean): void {
  const last = c.blockOutChannels.length - 1;
  const ch = c.blockOutChannels[last];
  const n = tokens(last);
  resnet(m, n, ch, ch, temb);
  if (!attention) return;
  spatialTransformer(m, n, ch, layersAt(c.transformerLayersPerBlock[last], 0), c.crossAttentionDim[last], l);
  resnet(m, n, ch, ch, temb);
}

/** UNet2DConditionModel (SD-1.5, SD-2.1, SDXL). */
export function unetMacs(c: UNet2DConditionConfig, o: MacOptions): ForwardMacs {
  const m = zero();
  const boc = c.blockOutChannels;
  const nb = boc.length;
  const l = o.textLen ?? 77;
  const temb = c.timeEmbeddingDim ?? 4 * boc[0];
  const tokens = levels(o);
  timeEmbedding(m, c, temb);
  m.rest += conv(tokens(0), c.inChannels, boc[0], c.convInKernel);
  downPath(m, c, tokens, temb, l);
  if (c.midBlockType) midBlock(m, c, tokens, temb, l, true);
  const rev = [...boc].reverse();
  const revLayers = [...c.layersPerBlock].reverse();
  let prevOut = rev[0];
  for (let i = 0; i < nb; i++) {
    const level = nb - 1 - i;
    const n = tokens(level);
    const out = rev[i];
    const inCh = rev[Math.min(i + 1, nb - 1)];
    const layers = revLayers[i] + 1;
    for (let j = 0; j < layers; j++) {
      const skip = j === layers - 1 ? inCh : out;
      resnet(m, n, (j === 0 ? prevOut : out) + skip, out, temb);
      if (c.upBlockTypes[i].startsWith('CrossAttn')) spatialTransformer(m, n, out, layersAt(c.reverseTransformerLayersPerBlock[i], j), c.crossAttentionDim[level], l);
    }
    if (i < nb - 1) m.rest += conv(tokens(level - 1), out, out, 3); // upsample 2× then 3×3 conv
    prevOut = out;
  }
  m.rest += conv(tokens(0), boc[0], c.outChannels, c.convOutKernel);
  return m;
}

/**
 * ControlNetModel: the conditioning embedding at the conditioning image's resolution, conv_in, the time
 * embedding, the down path and mid block as the UNet's, and a 1×1 zero convolution per output.
 */
export function controlnetMacs(c: ControlNetConfig, o: MacOptions): ForwardMacs {
  const m = zero();
  const boc = c.blockOutChannels;
  const l = o.textLen ?? 77;
  const temb = 4 * boc[0];
  const tokens = levels(o);
  timeEmbedding(m, c, temb);
  m.rest += conv(tokens(0), c.inChannels, boc[0], 3);
  // The embedding runs at the image's resolution: level −k is the latents upsampled 2^k times.
  const w = c.conditioningEmbeddingOutChannels;
  const top = w.length - 1;
  m.rest += conv(tokens(-top), c.conditioningChannels, w[0], 3);
  for (let i = 0; i < top; i++) m.rest += conv(tokens(i - top), w[i], w[i], 3) + conv(tokens(i + 1 - top), w[i], w[i + 1], 3);
  m.rest += conv(tokens(0), w[top], boc[0], 3);
  downPath(m, c, tokens, temb, l);
  midBlock(m, c, tokens, temb, l, c.midBlockType === 'UNetMidBlock2DCrossAttn');
  m.rest += conv(tokens(0), boc[0], boc[0], 1);
  boc.forEach((ch, i) => {
    m.rest += c.layersPerBlock[i] * conv(tokens(i), ch, ch, 1);
    if (i < boc.length - 1) m.rest += conv(tokens(i + 1), ch, ch, 1);
  });
  m.rest += conv(tokens(boc.length - 1), boc[boc.length - 1], boc[boc.length - 1], 1);
  return m;
}

/** PixArtTransformer2DModel (PixArt-α). */
export function pixartMacs(c: PixArtTransformerConfig, o: MacOptions): ForwardMacs {
  const m = zero();
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const p = c.patchSize;
  const n = (o.height / (o.latentScale ?? 8) / p) * (o.width / (o.latentScale ?? 8) / p);
  const l = o.textLen ?? 120;
  m.rest += conv(n, c.inChannels, d, p); // patch embedding: kernel p, stride p
  m.rest += lin(1, 256, d) + lin(1, d, d) + lin(1, d, 6 * d); // timestep MLP and adaLN-single linear
  if (c.useAdditionalConditions) {
    const q = d / 3;
    m.rest += lin(2, 256, q) + lin(2, q, q) + lin(1, 256, q) + lin(1, q, q); // resolution (2 values), aspect ratio
  }
  if (c.captionChannels !== null) m.rest += lin(l, c.captionChannels, d) + lin(l, d, d); // caption projection
  for (let i = 0; i < c.numLayers; i++) {
    m.selfLinear += 4 * lin(n, d, d);
    m.selfMatmul += 2 * n * n * d;
    m.crossLinear += 2 * lin(n, d, d) + 2 * lin(l, c.crossAttentionDim, d);
    m.crossMatmul += 2 * n * l * d;
    m.rest += lin(n, d, 4 * d) + lin(n, 4 * d, d);
  }
  m.rest += lin(n, d, p * p * c.outChannels);
  return m;
}
