import type { CommandModule } from 'yargs';
import { loadTokenizer } from '../tokenizers/index.js';

export const tokenizeCommand: CommandModule<object, { dir: string; prompts: string[]; 'max-length'?: number }> = {
  command: 'tokenize <dir> <prompts..>',
  describe: 'Print the token ids a tokenizer folder gives each prompt (padded to max length)',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true })
    .positional('prompts', { type: 'string', array: true, demandOption: true })
    .option('max-length', { type: 'number' }) as never,
  handler: async (a) => {
    const tok = await loadTokenizer(a.dir);
    const enc = tok.call(a.prompts, { padding: 'max_length', maxLength: a['max-length'], truncation: true });
    enc.inputIds.forEach((ids, i) => console.log(JSON.stringify({ prompt: a.prompts[i], input_ids: ids, attention_mask: enc.attentionMask[i], truncated: enc.truncated[i] })));
  },
};
