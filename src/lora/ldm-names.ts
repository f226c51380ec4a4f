/**
 * The original Stable Diffusion (LDM / SGM) names of a diffusers UNet's modules. kohya's SDXL trainer names
 * its LoRA modules after the original UNet (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`),
 * so these are aliases the kohya resolver accepts besides the diffusers paths. Derived from the model's own
 * blocks (layers per block, which blocks have attentions and resamplers), not from fixed SD-1.5/SDXL tables.
 */
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';

/** ResnetBlock2D's parts in the original ResBlock (in_layers = norm, act, conv; out_layers = norm, act, dropout, conv). */
const RESNET_PARTS: Record<string, string> = {
  norm1: 'in_layers.0', conv1: 'in_layers.2', time_emb_proj: 'emb_layers.1', norm2: 'out_layers.0', conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

/** diffusers block path → original path, for every block-level module of `unet`. */
function blockTable(unet: UNet2DConditionModel): Map<string, string> {
  const t = new Map<string, string>([
    ['conv_in', 'input_blocks.0.0'], ['time_embedding.linear_1', 'time_embed.0'], ['time_embedding.linear_2', 'time_embed.2'],
    ['add_embedding.linear_1', 'label_emb.0.0'], ['add_embedding.linear_2', 'label_emb.0.2'], ['conv_norm_out', 'out.0'], ['conv_out', 'out.2'],
    ['mid_block.resnets.0', 'middle_block.0'], ['mid_block.attentions.0', 'middle_block.1'], ['mid_block.resnets.1', 'middle_block.2'],
  ]);
  let n = 1;
  unet.down_blocks.items.forEach((b, i) => {
    for (let l = 0; l < b.resnets.length; l++, n++) {
      t.set(`down_blocks.${i}.resnets.${l}`, `input_blocks.${n}.0`);
      if (b.attentions) t.set(`down_blocks.${i}.attentions.${l}`, `input_blocks.${n}.1`);
    }
    if (b.downsamplers) t.set(`down_blocks.${i}.downsamplers.0.conv`, `input_blocks.${n++}.0.op`);
  });
  n = 0;
  unet.up_blocks.items.forEach((b, i) => {
    for (let l = 0; l < b.resnets.length; l++, n++) {
      t.set(`up_blocks.${i}.resnets.${l}`, `output_blocks.${n}.0`);
      if (b.attentions) t.set(`up_blocks.${i}.attentions.${l}`, `output_blocks.${n}.1`);
      if (b.upsamplers && l === b.resnets.length - 1) t.set(`up_blocks.${i}.upsamplers.0.conv`, `output_blocks.${n}.${b.attentions ? 2 : 1}.conv`);
    }
  });
  return t;
}

/** The original name of each of `paths` (diffusers module paths of `unet`) that has one. */
export function ldmAliases(unet: UNet2DConditionModel, paths: Iterable<string>): Map<string, string> {
  const table = blockTable(unet);
  const out = new Map<string, string>();
  for (const path of paths) {
    const parts = path.split('.');
    for (let k = parts.length; k > 0; k--) {
      const head = parts.slice(0, k).join('.');
      const ldm = table.get(head);
      if (ldm === undefined) continue;
      const rest = parts.slice(k);
      if (head.includes('.resnets.') && rest.length) rest[0] = RESNET_PARTS[rest[0]] ?? rest[0];
      out.set(path, [ldm, ...rest].join('.'));
      break;
    }
  }
  return out;
}
