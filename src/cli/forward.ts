/**
 * `tgate forward <component_dir> --inputs IN.safetensors --output OUT.safetensors`: runs one component on
 * saved inputs named and laid out as diffusers' forward arguments (NCHW), so a conversion (or a LoRA, fused
 * with `--lora`) can be checked against PyTorch dumps.
 */
import type { CommandModule } from 'yargs';
import { loadModel } from '../models/load.js';
import { runModel } from '../models/registry.js';
import { applyLora } from '../lora/lora-set.js';
import { backendOption, setupBackend, weightDtypeOption } from './options.js';
import { readTensors, writeTensors } from './files.js';
import { loraPrefix, parseLoraArg } from './lora-arg.js';

interface Args {
  dir: string; inputs: string; output: string; backend: string; threads?: number; mode: 'decode' | 'encode'; variant?: string;
  'weight-dtype': 'float32' | 'float16'; lora?: string[]; 'lora-prefix'?: string; offload: boolean;
}

export const forwardCommand: CommandModule<object, Args> = {
  command: 'forward <dir>',
  describe: 'Run one model component (class from config.json) on saved inputs and save its outputs',
  builder: (y) => y
    .parserConfiguration({ 'greedy-arrays': false })
    .positional('dir', { type: 'string', demandOption: true, describe: 'component folder (config.json + weights)' })
    .option('inputs', { type: 'string', demandOption: true, describe: 'safetensors with diffusers-named inputs (NCHW)' })
    .option('output', { type: 'string', demandOption: true, describe: 'safetensors file to write' })
    .option('mode', { choices: ['decode', 'encode'] as const, default: 'decode' as const, describe: 'AutoencoderKL only' })
    .option('variant', { type: 'string', describe: 'weight variant, e.g. fp16' })
    .option('lora', { type: 'string', array: true, describe: "LoRA FILE[:scale] (repeatable): this component's keys, fused into its weights" })
    .option('lora-prefix', { type: 'string', describe: 'the LoRA keys to apply (unet, transformer, text_encoder, text_encoder_2, lora_unet, lora_te1, …; default: from the class)' })
    .option('offload', { type: 'boolean', default: false, describe: 'keep weights in JS memory and upload each block only while it runs (components larger than the wasm heap)' })
    .options(weightDtypeOption)
    .options(backendOption) as never,
  handler: async (a) => {
    const loras = (a.lora ?? []).map(parseLoraArg);
    if (a['lora-prefix'] !== undefined && !loras.length) throw new Error('--lora-prefix needs --lora');
    await setupBackend(a.backend, a.threads);
    const model = await loadModel(a.dir, { variant: a.variant, weightDtype: a['weight-dtype'], offload: a.offload });
    try {
      for (const l of loras) {
        const set = await applyLora(model, l.source, { prefix: loraPrefix(model, a['lora-prefix']), scale: l.scale });
        console.error(`LoRA ${l.source} at scale ${l.scale}: ${Object.values(set.list()[0].modules)[0] ?? 0} layers fused`);
      }
      const inputs = await readTensors(a.inputs);
      try {
        const out = runModel(model, inputs, { mode: a.mode });
        await writeTensors(a.output, out);
        console.log(`${model.constructor.name}: wrote ${Object.entries(out).map(([k, t]) => `${k} [${t.shape}]`).join(', ')} to ${a.output}`);
        Object.values(out).forEach((t) => t.dispose());
      } finally {
        Object.values(inputs).forEach((t) => t.dispose());
      }
    } finally {
      model.dispose();
    }
  },
};
