/**
 * `tgate forward <component_dir> --inputs IN.safetensors --output OUT.safetensors`: runs one component on
 * saved inputs named and laid out as diffusers' forward arguments (NCHW), so a conversion can be checked
 * against PyTorch dumps.
 */
import type { CommandModule } from 'yargs';
import { loadModel } from '../models/load.js';
import { runModel } from '../models/registry.js';
import { backendOption, setupBackend, weightDtypeOption } from './options.js';
import { readTensors, writeTensors } from './files.js';

interface Args { dir: string; inputs: string; output: string; backend: string; mode: 'decode' | 'encode'; variant?: string; 'weight-dtype': 'float32' | 'float16' }

export const forwardCommand: CommandModule<object, Args> = {
  command: 'forward <dir>',
  describe: 'Run one model component (class from config.json) on saved inputs and save its outputs',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'component folder (config.json + weights)' })
    .option('inputs', { type: 'string', demandOption: true, describe: 'safetensors with diffusers-named inputs (NCHW)' })
    .option('output', { type: 'string', demandOption: true, describe: 'safetensors file to write' })
    .option('mode', { choices: ['decode', 'encode'] as const, default: 'decode' as const, describe: 'AutoencoderKL only' })
    .option('variant', { type: 'string', describe: 'weight variant, e.g. fp16' })
    .options(weightDtypeOption)
    .options(backendOption) as never,
  handler: async (a) => {
    await setupBackend(a.backend, a.threads as number | undefined);
    const model = await loadModel(a.dir, { variant: a.variant, weightDtype: a['weight-dtype'] });
    const inputs = await readTensors(a.inputs);
    try {
      const out = runModel(model, inputs, { mode: a.mode });
      await writeTensors(a.output, out);
      console.log(`${model.constructor.name}: wrote ${Object.entries(out).map(([k, t]) => `${k} [${t.shape}]`).join(', ')} to ${a.output}`);
      Object.values(out).forEach((t) => t.dispose());
    } finally {
      Object.values(inputs).forEach((t) => t.dispose());
      model.dispose();
    }
  },
};
