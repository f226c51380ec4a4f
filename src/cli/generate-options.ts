/**
 * `tgate generate`'s flags, in one builder so that another module can add its own to the same command
 * (`moreOptions(generateOptions(y))`), and the parsed arguments they give.
 */
import type { Argv } from 'yargs';
import { backendOption, weightDtypeOption } from './options.js';
import { controlnetOptions, type ControlNetArgs } from './controlnet-options.js';

export interface GenerateArgs extends ControlNetArgs {
  dir?: string; prompt?: string[]; 'negative-prompt'?: string[]; 'num-images': number; grid: boolean;
  steps: number; guidance?: number; 'guidance-rescale'?: number; eta?: number; 'clip-skip'?: number; seed?: number;
  height?: number; width?: number; image?: string; strength?: number; mask?: string;
  'gate-step'?: string; 'auto-threshold'?: number; 'sp-interval': number; 'fi-interval': number; 'warm-up': number; lcm: boolean;
  'deepcache-interval'?: number; scheduler?: string; 'list-schedulers': boolean; lora?: string[]; 'fuse-lora': boolean;
  'prompt-embeds'?: string; latents?: string; 'output-type': 'image' | 'latent'; output?: string;
  variant?: string; offload: boolean; 'weight-dtype': 'float32' | 'float16'; backend: string; threads?: number;
}

export function generateOptions(y: Argv): Argv {
  return y
    // Repeated array flags collect (`--prompt a --prompt b`); a greedy array would swallow the pipeline folder.
    .parserConfiguration({ 'greedy-arrays': false })
    .positional('dir', { type: 'string', describe: 'diffusers pipeline folder, converted folder or URL (default: the bundled demo model)' })
    .option('prompt', { type: 'string', array: true, describe: 'text prompt; repeat the flag for a batch of prompts' })
    .option('negative-prompt', { type: 'string', array: true, describe: 'one for every prompt, or one per prompt (repeat the flag)' })
    .option('num-images', { type: 'number', default: 1, describe: 'images per prompt' })
    .option('grid', { type: 'boolean', default: false, describe: 'write one contact sheet (a row per prompt) instead of a file per image' })
    .option('steps', { type: 'number', default: 25, describe: 'inference steps' })
    .option('guidance', { type: 'number', describe: 'guidance scale (pipeline default when omitted)' })
    .option('guidance-rescale', { type: 'number', describe: 'guidance rescale φ in [0, 1] (diffusers guidance_rescale)' })
    .option('eta', { type: 'number', describe: 'DDIM η (0: deterministic)' })
    .option('clip-skip', { type: 'number', describe: 'CLIP layers to skip from the end (SD, SDXL; diffusers clip_skip)' })
    .option('seed', { type: 'number', describe: 'noise seed, 0…2^32−1 (draws what torch.Generator().manual_seed(seed) gives diffusers); random when omitted, and printed' })
    .option('height', { type: 'number' })
    .option('width', { type: 'number' })
    .option('image', { type: 'string', describe: 'img2img: start from this PNG (its size sets --height/--width)' })
    .option('strength', { type: 'number', describe: 'img2img/inpainting: share of the steps that run, in (0, 1] (default 0.8; SDXL 0.3; inpainting 1)' })
    .option('mask', { type: 'string', describe: 'inpainting: PNG mask, white = repaint (with --image; SD pipelines)' })
    .option('gate-step', { type: 'string', describe: 'TGATE gate step (number, or "auto": chosen during the run from the cross-attention change); omit for no TGATE' })
    .option('auto-threshold', { type: 'number', describe: 'relative cross-attention change below which --gate-step auto closes the gate' })
    .option('sp-interval', { type: 'number', default: 5 })
    .option('fi-interval', { type: 'number', default: 1 })
    .option('warm-up', { type: 'number', default: 2 })
    .option('lcm', { type: 'boolean', default: false, describe: 'TGATE LCM mode (no guidance)' })
    .option('deepcache-interval', { type: 'number', describe: 'DeepCache: full UNet every N steps (UNet pipelines)' })
    .option('scheduler', { type: 'string', describe: 'sampler class, e.g. EulerDiscreteScheduler (see --list-schedulers)' })
    .option('list-schedulers', { type: 'boolean', default: false, describe: 'print the samplers --scheduler takes and exit' })
    .option('lora', { type: 'string', array: true, describe: 'LoRA safetensors FILE[:scale] (path or URL; repeatable), fused into the weights (see --fuse-lora)' })
    .option('fuse-lora', { type: 'boolean', default: true, describe: 'fuse the LoRAs into the weights (no cost per step); --no-fuse-lora runs them unfused' })
    .option('prompt-embeds', { type: 'string', describe: 'safetensors with prompt_embeds, negative_prompt_embeds, … instead of a prompt' })
    .option('latents', { type: 'string', describe: 'safetensors with `latents` (NCHW, unscaled)' })
    .option('output-type', { choices: ['image', 'latent'] as const, default: 'image' as const })
    .option('output', { type: 'string', describe: 'PNG file; several images go to NAME-0.png, NAME-1.png, … (or .safetensors with --output-type latent)' })
    .option('variant', { type: 'string', describe: 'weight variant, e.g. fp16' })
    .option('offload', { type: 'boolean', default: false, describe: 'keep weights in JS memory and upload each block only while it runs (models larger than the wasm heap; slower)' })
    .options(controlnetOptions)
    .options(weightDtypeOption)
    .options(backendOption);
}
