/** Tokenizers for the text encoders of the supported pipelines (CLIP BPE, T5 SentencePiece unigram). */
import { readFileAt, readJsonAt } from '../io/location.js';
import { CLIPTokenizer } from './clip-bpe.js';
import { T5Tokenizer } from './t5-unigram.js';

export { CLIPTokenizer, clipBasicClean, type CLIPTokenizerFiles } from './clip-bpe.js';
export { T5Tokenizer, type T5TokenizerFiles } from './t5-unigram.js';
export type { BatchEncoding, TokenizeOptions, TruncationReport } from './batch-encoding.js';

/** Either tokenizer; both share `encode`, `call`, `tokenCount`, `checkTruncation` and `decode`. */
export type Tokenizer = CLIPTokenizer | T5Tokenizer;

/**
 * Loads the tokenizer of a model folder (Node). The class comes from tokenizer_config.json's `tokenizer_class`
 * (`CLIPTokenizer`, `T5Tokenizer` or their `*Fast` variants, which tokenize identically for these models);
 * without it, from the files present (spiece.model → T5, vocab.json + merges.txt → CLIP).
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const config = await readJsonAt(dir, 'tokenizer_config.json');
  const cls = config?.tokenizer_class;
  if (typeof cls === 'string' && cls.length > 0) {
    const base = cls.endsWith('Fast') ? cls.slice(0, -'Fast'.length) : cls;
    if (base === 'CLIPTokenizer') return CLIPTokenizer.fromDir(dir);
    if (base === 'T5Tokenizer') return T5Tokenizer.fromDir(dir);
    throw new Error(
      `${dir}/tokenizer_config.json: unsupported tokenizer_class "${cls}" (supported: CLIPTokenizer, T5Tokenizer)`,
    );
  }
  if (await readFileAt(dir, 'spiece.model')) return T5Tokenizer.fromDir(dir);
  if ((await readFileAt(dir, 'vocab.json')) && (await readFileAt(dir, 'merges.txt'))) return CLIPTokenizer.fromDir(dir);
  throw new Error(`${dir}: no tokenizer_class in tokenizer_config.json and no spiece.model or vocab.json + merges.txt`);
}
