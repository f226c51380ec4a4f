/**
 * Configs of the real checkpoints, for the benchmarks that build full-size models with random weights: the
 * denoisers and VAE from test/fixtures/configs (as diffusers resolves them), the CLIP text towers (as
 * transformers' configs of the released checkpoints give them), and SD-1.5's pipeline files.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A config from test/fixtures/configs (`sd15_unet.json`, `sdxl_unet.json`, `sd_vae.json`, …). */
export function fixtureConfig(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/configs', name), 'utf8')) as Record<string, unknown>;
}

/** openai/clip-vit-large-patch14's text tower, SD-1.5's text_encoder. */
export const CLIP_L = {
  _class_name: 'CLIPTextModel', hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12,
  max_position_embeddings: 77, vocab_size: 49408, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, projection_dim: 768,
  bos_token_id: 0, eos_token_id: 2, pad_token_id: 1,
};

/** laion/CLIP-ViT-bigG-14's text tower, SDXL's text_encoder_2. */
export const CLIP_G = {
  ...CLIP_L, _class_name: 'CLIPTextModelWithProjection', hidden_size: 1280, intermediate_size: 5120, num_hidden_layers: 32,
  num_attention_heads: 20, hidden_act: 'gelu', projection_dim: 1280,
};

/** runwayml/stable-diffusion-v1-5's scheduler_config.json (diffusers v0.30.3). */
export const SD15_SCHEDULER = {
  _class_name: 'PNDMScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, num_train_timesteps: 1000,
  prediction_type: 'epsilon', set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, timestep_spacing: 'leading', trained_betas: null,
};

/** CLIP's special token ids (the tokenizer's, not the legacy ids in CLIP_L). */
export const CLIP_BOS = 49406;
export const CLIP_EOS = 49407;
