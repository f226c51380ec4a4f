/** The `tgate` command line. Each command lives in its own module; this file only wires them. */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { infoCommand } from './info.js';
import { forwardCommand } from './forward.js';
import { generateCommand } from './generate.js';
import { tokenizeCommand } from './tokenize.js';
import { convertCommand } from '../convert/cli.js';
import { analyzeCommand } from './analyze.js';

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('tgate')
    .usage('$0 <command> [options]\n\nStable Diffusion / SDXL / PixArt-α in TensorFlow.js with TGATE.')
    .command(infoCommand)
    .command(generateCommand)
    .command(forwardCommand)
    .command(tokenizeCommand)
    .command(convertCommand)
    .command(analyzeCommand)
    .demandCommand(1, 'name a command (see --help)')
    .strict()
    .fail((msg, err) => {
      if (err) {
        console.error(`tgate: ${err.message}`);
      } else {
        console.error(msg);
        console.error('Run `tgate --help` for usage.');
      }
      process.exit(1);
    })
    .help()
    .parseAsync();
}

await main(hideBin(process.argv));
// Dawn (WebGPU in Node) keeps the event loop alive after the work is done.
process.exit(0);
