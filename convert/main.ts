/**
 * Stand-alone entry point of the converter (`node dist/convert/main.js <src> <out> …`), for use without
 * the rest of the `tgate` CLI; `tgate convert` runs the same command.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { convertCommand } from './cli.js';

await yargs(hideBin(process.argv))
  .scriptName('tgate-convert')
  .command({ ...convertCommand, command: '$0 <src> <out>' })
  .strict()
  .fail((msg, err) => {
    console.error(err ? `tgate convert: ${err.message}` : `${msg}\nRun with --help for usage.`);
    process.exit(1);
  })
  .help()
  .parseAsync();
