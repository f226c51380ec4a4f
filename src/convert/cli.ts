/**
 * `tgate convert <diffusers_dir> <out_dir>`: the yargs command (wired into the `tgate` CLI by src/cli/main.ts).
 * Progress goes to stderr, the summary to stdout.
 */
import type { CommandModule } from 'yargs';
import { convertPipeline, type ConvertProgress } from './convert.js';
import { QUANTIZE_MODES, type QuantizeMode } from '../io/tfjs-format.js';

interface ConvertArgs {
  src: string;
  out: string;
  quantize: QuantizeMode;
  'shard-mb': number;
  components?: string[];
  variant?: string;
  force: boolean;
  verify: boolean;
  backend: string;
}

const MB = (b: number): string => (b / 1024 / 1024).toFixed(1);

/** A one-line progress bar on a TTY (redrawn at most every 100 ms), one line per component otherwise. */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): (p: ConvertProgress) => void {
  let last = 0;
  let lastComponent = '';
  return (p) => {
    const frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : 1;
    const label = p.phase === 'copy' ? `copying ${p.component}` : p.phase === 'done' ? 'done' : `${p.component || 'component'} (${p.componentIndex + 1}/${p.componentCount})`;
    if (!stream.isTTY) {
      const key = `${p.phase}:${p.component}`;
      if ((p.phase === 'component' || p.phase === 'copy' || p.phase === 'done') && key !== lastComponent) {
        lastComponent = key;
        stream.write(`${label}  ${MB(p.bytesDone)}/${MB(p.bytesTotal)} MiB\n`);
      }
      return;
    }
    const now = Date.now();
    if (p.phase === 'tensor' && now - last < 100) return;
    last = now;
    const width = 30;
    const filled = Math.round(frac * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    stream.write(`\r[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  ${MB(p.bytesDone)}/${MB(p.bytesTotal)} MiB  ${label}`.padEnd(100));
    if (p.phase === 'done') stream.write('\n');
  };
}

export const convertCommand: CommandModule<object, ConvertArgs> = {
  command: 'convert <src> <out>',
  describe: 'Convert a diffusers pipeline (or component) folder to TF.js model folders (model.json + shards)',
  builder: (y) => y
    .positional('src', { type: 'string', demandOption: true, describe: 'diffusers pipeline folder (model_index.json) or component folder (config.json)' })
    .positional('out', { type: 'string', demandOption: true, describe: 'output folder (must not exist unless --force)' })
    .option('quantize', { choices: QUANTIZE_MODES, default: 'none' as QuantizeMode, describe: 'weight storage: float32 (none), float16, or uint8 (per-tensor affine)' })
    .option('shard-mb', { type: 'number', default: 4, describe: 'shard size in MiB' })
    .option('components', {
      type: 'string', array: true, describe: 'only these pipeline components (comma or space separated)',
      coerce: (v: string[]) => v.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean),
    })
    .option('variant', { type: 'string', describe: 'diffusers weight variant to read, e.g. fp16' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output folder' })
    .option('verify', { type: 'boolean', default: false, describe: 'run each converted component against the original on random inputs' })
    .option('backend', { type: 'string', default: 'cpu', describe: 'backend for --verify (auto, cpu, wasm, webgpu, …)' }) as never,
  handler: async (a) => {
    const t0 = Date.now();
    const rep = await convertPipeline(a.src, a.out, {
      quantize: a.quantize, shardMb: a['shard-mb'], components: a.components, variant: a.variant, force: a.force,
    }, progressPrinter());
    for (const c of rep.components) {
      console.log(`${(c.name || '.').padEnd(16)} ${c.className.padEnd(28)} ${String(c.tensors).padStart(5)} tensors  ${(c.parameters / 1e6).toFixed(2).padStart(8)} M params  ${MB(c.storedBytes).padStart(8)} MiB in ${c.shards} shard(s)`);
    }
    if (rep.copied.length) console.log(`copied: ${rep.copied.join(', ')}`);
    console.log(`wrote ${rep.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (a.verify) {
      const { initBackend } = await import('../backends/index.js');
      const { verifyConversion } = await import('./verify.js');
      const be = await initBackend(a.backend as never, { quiet: true });
      console.log(`verifying on ${be.name}:`);
      await verifyConversion(a.src, a.out, {
        variant: a.variant,
        onResult: (r) => console.log(`  ${r.component.padEnd(16)} ${r.className.padEnd(28)} ${r.skipped ? `skipped: ${r.skipped}` : `relative L2 error ${r.relError!.toExponential(3)}`}`),
      });
    }
  },
};
