/** Tokenizers for the text encoders of the supported pipelines (CLIP BPE, T5 SentencePiece unigram). */
import { readFileAt, readJsonAt } from '../io/location.js';
import type { NetOptions } from '../io/http-fetch.js';
import { CLIPTokenizer } from './clip-bpe.js';
import { T5Tokenizer } from './t5-unigram.js';

export { CLIPTokenizer, clipBasicClean, type CLIPTokenizerFiles } from './clip-bpe.js';
export { T5Tokenizer, type T5TokenizerFiles } from './t5-unigram.js';
export type { BatchEncoding, TokenizeOptions, TruncationReport } from './batch-encoding.js';

/** Either tokenizer; both share `encode`, `call`, `tokenCount`, `checkTruncation` and `decode`. */
export type Tokenizer = CLIPTokenizer | T5Tokenizer;

/**
 * Loads the tokenizer of a model folder (a Node path, or a URL read with `opts`' fetch, timeout and signal).
 * The class comes from tokenizer_config.json's `tokenizer_class`
 * (`CLIPTokenizer`, `T5Tokenizer` or their `*Fast` variants, which tokenize identically for these models);
 * without it, from the files present (spiece.model → T5, vocab.json + merges.txt → CLIP).
 */
export async function loadTokenizer(dir: string, opts: NetOptions = {}): Promise<Tokenizer> {
  const config = await readJsonAt(dir, 'tokenizer_config.json', opts);
  const cls = config?.tokenizer_class;
  if (typeof cls === 'string' && cls.length > 0) {
    const base = cls.endsWith('Fast') ? cls.slice(0, -'Fast'.length) : cls;
    if (base === 'CLIPTokenizer') return CLIPTokenizer.fromDir(dir, opts);
    if (base === 'T5Tokenizer') return T5Tokenizer.fromDir(dir, opts);
    throw new Error(
      `${dir}/tokenizer_config.json: unsupported tokenizer_class "${cls}" (supported: CLIPTokenizer, T5Tokenizer)`,
    );
  }
  if (await readFileAt(dir, 'spiece.model', opts)) return T5Tokenizer.fromDir(dir, opts);
  if ((await readFileAt(dir, 'vocab.json', opts)) && (await readFileAt(dir, 'merges.txt', opts))) return CLIPTokenizer.fromDir(dir, opts);
  throw new Error(`${dir}: no tokenizer_class in tokenizer_config.json and no spiece.model or vocab.json + merges.txt`);
}
