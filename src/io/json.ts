/**
 * Parsing the JSON files of a model folder (configs, model_index.json, tokenizer files): untrusted, so read
 * with the bounded scanner of json-scanner.ts (nesting, number of values, duplicate keys, UTF-8), and as
 * Python's json module writes them: diffusers saves configs with bare `NaN`, `Infinity` and `-Infinity`
 * (e.g. DPMSolverMultistepScheduler's lambda_min_clipped), which JSON.parse rejects.
 */
import { JsonScanError, parseBoundedJson } from './json-scanner.js';

/** Nesting of a config file (diffusers' deepest, transformer_layers_per_block, is 3). */
const MAX_DEPTH = 64;
/** Values in one file (CLIP's vocab.json has about 50,000; mT5's added tokens a few hundred). */
const MAX_VALUES = 4_000_000;

/** Parses a JSON file's bytes; `source` (the file or URL) is named in every error. */
export function parseJson<T = Record<string, unknown>>(bytes: Uint8Array, source: string): T {
  // A UTF-8 byte order mark, which some editors write, is not part of the document.
  const body = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes;
  try {
    return parseBoundedJson(body, { maxDepth: MAX_DEPTH, maxValues: MAX_VALUES, pythonLiterals: true }) as T;
  } catch (e) {
    if (!(e instanceof JsonScanError)) throw e;
    throw new Error(e.kind === 'syntax' ? `${source} is not valid JSON: ${e.message}` : `${source} rejected: ${e.message}`);
  }
}
