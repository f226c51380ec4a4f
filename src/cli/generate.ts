/** `tgate generate [pipeline_dir] --prompt "…" --output out.png`: text-to-image with optional TGATE. */
import type { CommandModule } from 'yargs';
import * as tf from '@tensorflow/tfjs-core';
import { loadPipeline } from '../pipelines/load.js';
import { resolveTgate } from '../attention/tgate.js';
import { schedulerFromConfig } from '../samplers/index.js';
import { encodePNG } from '../io/png.js';
import { backendOption, demoModelDir, setupBackend, weightDtypeOption } from './options.js';
import { readTensors, writeAtomic, writeTensors } from './files.js';
import { progressBar } from './progress.js';
import type { SDXLGenerateOptions } from '../pipelines/stable-diffusion-xl.js';

interface Args {
  dir?: string; prompt?: string; 'negative-prompt'?: string; steps: number; guidance?: number; 'gate-step'?: string;
  'auto-threshold'?: number; 'sp-interval': number; 'fi-interval': number; 'warm-up': number; lcm: boolean; 'deepcache-interval'?: number; seed: number;
  height?: number; width?: number; backend: string; output: string; 'prompt-embeds'?: string; latents?: string;
  scheduler?: string; 'output-type': 'image' | 'latent'; variant?: string; offload: boolean; 'weight-dtype': 'float32' | 'float16';
}

/** Embedding file tensor names → generate() options. */
const EMBED_NAMES: Record<string, string> = {
  prompt_embeds: 'promptEmbeds', negative_prompt_embeds: 'negativePromptEmbeds', pooled_prompt_embeds: 'pooledPromptEmbeds',
  negative_pooled_prompt_embeds: 'negativePooledPromptEmbeds', prompt_attention_mask: 'promptAttentionMask',
  negative_prompt_attention_mask: 'negativePromptAttentionMask',
};

export const generateCommand: CommandModule<object, Args> = {
  command: 'generate [dir]',
  describe: 'Generate an image (default model: the bundled tiny-shapes demo)',
  builder: (y) => y
    .positional('dir', { type: 'string', describe: 'diffusers pipeline folder (default: bundled demo model)' })
    .option('prompt', { type: 'string', describe: 'text prompt' })
    .option('negative-prompt', { type: 'string' })
    .option('steps', { type: 'number', default: 25, describe: 'inference steps' })
    .option('guidance', { type: 'number', describe: 'guidance scale (pipeline default when omitted)' })
    .option('gate-step', { type: 'string', describe: 'TGATE gate step (number, or "auto": chosen during the run from the cross-attention change); omit for no TGATE' })
    .option('auto-threshold', { type: 'number', describe: 'relative cross-attention change below which --gate-step auto closes the gate' })
    .option('sp-interval', { type: 'number', default: 5 })
    .option('fi-interval', { type: 'number', default: 1 })
    .option('warm-up', { type: 'number', default: 2 })
    .option('lcm', { type: 'boolean', default: false, describe: 'TGATE LCM mode (no guidance)' })
    .option('deepcache-interval', { type: 'number', describe: 'DeepCache: full UNet every N steps (UNet pipelines)' })
    .option('seed', { type: 'number', default: 0, describe: 'noise seed; draws what torch.Generator().manual_seed(seed) gives diffusers' })
    .option('height', { type: 'number' })
    .option('width', { type: 'number' })
    .option('prompt-embeds', { type: 'string', describe: 'safetensors with prompt_embeds, negative_prompt_embeds, … instead of a prompt' })
    .option('latents', { type: 'string', describe: 'safetensors with `latents` (NCHW, unscaled)' })
    .option('scheduler', { type: 'string', describe: 'sampler class, e.g. EulerDiscreteScheduler' })
    .option('output-type', { choices: ['image', 'latent'] as const, default: 'image' as const })
    .option('variant', { type: 'string', describe: 'weight variant, e.g. fp16' })
    .option('offload', { type: 'boolean', default: false, describe: 'keep weights in JS memory and upload each block only while it runs (models larger than the wasm heap; slower)' })
    .options(weightDtypeOption)
    .option('output', { type: 'string', demandOption: true, describe: 'PNG file (or .safetensors with --output-type latent)' })
    .options(backendOption) as never,
  handler: async (a) => {
    const gate = a['gate-step'];
    if (gate !== undefined && !/^(\d+|auto)$/.test(gate)) throw new Error(`--gate-step must be a positive integer or "auto", got "${gate}"`);
    if (a.prompt === undefined && !a['prompt-embeds']) throw new Error('give --prompt or --prompt-embeds');
    const tgate = gate === undefined ? null : {
      gateStep: gate === 'auto' ? 'auto' as const : Number(gate), autoThreshold: a['auto-threshold'],
      spInterval: a['sp-interval'], fiInterval: a['fi-interval'], warmUp: a['warm-up'], lcm: a.lcm,
    };
    if (tgate) resolveTgate(tgate, a.steps); // fail before loading the model
    await setupBackend(a.backend, a.threads as number | undefined);
    const dir = a.dir ?? demoModelDir();
    const bar = progressBar('loading');
    const pipe = await loadPipeline(dir, {
      variant: a.variant, offload: a.offload, weightDtype: a['weight-dtype'], onProgress: (name, i, n) => bar(i + 1, n, name),
    });
    const owned: tf.Tensor[] = [];
    try {
      if (a.scheduler) {
        const next = schedulerFromConfig(pipe.scheduler.config, a.scheduler);
        pipe.scheduler.dispose();
        pipe.scheduler = next;
      }
      const opts: SDXLGenerateOptions & Record<string, unknown> = {
        prompt: a.prompt, negativePrompt: a['negative-prompt'], numInferenceSteps: a.steps, guidanceScale: a.guidance,
        seed: a.seed, height: a.height, width: a.width, outputType: a['output-type'],
        tgate,
        deepcache: a['deepcache-interval'] ? { cacheInterval: a['deepcache-interval'] } : null,
      };
      if (a['prompt-embeds']) {
        const t = await readTensors(a['prompt-embeds']);
        owned.push(...Object.values(t));
        for (const [k, v] of Object.entries(t)) {
          if (!EMBED_NAMES[k]) throw new Error(`${a['prompt-embeds']}: unexpected tensor "${k}" (expected: ${Object.keys(EMBED_NAMES).join(', ')})`);
          opts[EMBED_NAMES[k]] = v;
        }
        if (!t.prompt_embeds) throw new Error(`${a['prompt-embeds']} has no prompt_embeds tensor`);
      }
      if (a.latents) {
        const t = await readTensors(a.latents);
        owned.push(...Object.values(t));
        if (!t.latents) throw new Error(`${a.latents} has no tensor named "latents"`);
        opts.latents = t.latents;
      }
      const stepBar = progressBar('denoising');
      const t0 = Date.now();
      let gateUsed: number | null | undefined;
      opts.onStep = async (s) => {
        await s.latents.data();
        gateUsed = s.gateStep;
        stepBar(s.step + 1, s.numSteps, `batch ${s.batch}`);
      };
      const { latents, images } = await pipe.generate(opts);
      const secs = ((Date.now() - t0) / 1000).toFixed(2);
      if (a['output-type'] === 'latent') await writeTensors(a.output, { latents });
      else await writeAtomic(a.output, await encodePNG(images[0]));
      latents.dispose();
      const gateNote = gate === undefined ? '' : `, TGATE gate ${gateUsed ?? 'never closed'}${gate === 'auto' ? ' (auto)' : ''}`;
      console.log(`wrote ${a.output} (${secs} s${gateNote})`);
    } finally {
      owned.forEach((t) => t.dispose());
      pipe.dispose();
    }
  },
};
