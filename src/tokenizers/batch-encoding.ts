/**
 * Pieces shared by the CLIP and T5 tokenizers: config parsing, added-token splitting (as transformers'
 * slow `PreTrainedTokenizer.tokenize` does before calling the model-specific `_tokenize`), truncation and padding.
 */

import { excerpt, quoted } from '../io/json-scanner.js';
import { showValue } from '../io/config.js';
import { joinLocation } from '../io/location.js';

/** JSON object as parsed from tokenizer_config.json / special_tokens_map.json. */
export type JsonObject = Record<string, unknown>;

/** Largest token id (ids become int32 tensors). */
const MAX_TOKEN_ID = 2 ** 31 - 1;
/** Characters of the truncated part quoted in a truncation warning. */
const SHOWN_CUT_CHARS = 100;

/** How a tokenizer file is named in errors: `<source>/<name>` when the folder is known. */
export const tokenizerFile = (source: string | undefined, name: string): string => (source ? joinLocation(source, name) : name);

/** Throws an error about tokenizer file `file`. */
export function tokenizerFileError(file: string, problem: string): Error {
  return new Error(`${file}: ${problem}`);
}

/** A tokenizer JSON file that must hold an object when present (tokenizer_config.json, special_tokens_map.json). */
export function jsonObject(v: unknown, file: string): JsonObject | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw tokenizerFileError(file, `expected a JSON object, found ${showValue(v)}`);
  return v as JsonObject;
}

/** Whether `v` can be a token id. */
const isTokenId = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_TOKEN_ID;

/**
 * A token → id file (vocab.json, added_tokens.json), checked: a JSON object whose values are non-negative integer
 * ids; anything else is an error naming `file` (a vocabulary that silently maps every token to unk is a wrong image).
 */
export function tokenIdMap(v: unknown, file: string): Map<string, number> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw tokenizerFileError(file, `expected a JSON object of token → id, found ${showValue(v)}`);
  }
  const out = new Map<string, number>();
  for (const [tok, id] of Object.entries(v)) {
    if (!isTokenId(id)) throw tokenizerFileError(file, `token ${quoted(tok)} has id ${showValue(id)}: ids must be integers in 0…${MAX_TOKEN_ID}`);
    out.set(tok, id);
  }
  return out;
}

/** Options of {@link CLIPTokenizer.call} / {@link T5Tokenizer.call}. */
export interface TokenizeOptions {
  /**
   * `'max_length'` pads every row to `maxLength`; `'longest'` pads to the longest row of the batch;
   * `'none'` (default) leaves rows ragged.
   */
  padding?: 'max_length' | 'longest' | 'none';
  /** Defaults to the tokenizer's `model_max_length`. */
  maxLength?: number;
  /**
   * Cut rows (special tokens included) to `maxLength`. Defaults to `true`, unlike transformers, because every
   * caller in this project feeds a model whose position table is exactly `maxLength` long.
   */
  truncation?: boolean;
}

/** Output of a batched tokenizer call. */
export interface BatchEncoding {
  inputIds: number[][];
  /** 1 for real tokens (special tokens included), 0 for padding. */
  attentionMask: number[][];
  /** Per row: whether content tokens were dropped by truncation (so callers can warn). */
  truncated: boolean[];
}

/** A token that is matched verbatim in the raw text before model tokenization (transformers AddedToken). */
export interface AddedToken {
  content: string;
  id: number;
  /** Eat whitespace on the left / right of the token. */
  lstrip: boolean;
  rstrip: boolean;
}

/** A piece of raw text still to tokenize, or an added token already resolved to its id. */
export type Segment = { text: string } | { id: number };

/** Content of a special-token entry, which may be a plain string or an AddedToken-like object. */
export function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as JsonObject).content === 'string') {
    return (v as JsonObject).content as string;
  }
  return undefined;
}

/**
 * Resolves a special token (`bos_token`, `pad_token`, ...) the way transformers' from_pretrained does:
 * special_tokens_map.json overrides tokenizer_config.json, which overrides the class default.
 */
export function specialToken(
  key: string, config: JsonObject, specialMap: JsonObject | undefined, fallback: string,
): string {
  return tokenContent(specialMap?.[key]) ?? tokenContent(config[key]) ?? fallback;
}

/**
 * Reads `added_tokens_decoder` of a tokenizer_config.json (`file`, for errors) into AddedTokens: keys are token
 * ids, values tokens (a string or an object with a string `content`).
 */
export function addedTokensFromConfig(config: JsonObject, file = 'tokenizer_config.json'): AddedToken[] {
  const dec = config.added_tokens_decoder;
  if (dec === undefined || dec === null) return [];
  if (typeof dec !== 'object' || Array.isArray(dec)) throw tokenizerFileError(file, `added_tokens_decoder=${showValue(dec)} is not an object of id → token`);
  const out: AddedToken[] = [];
  for (const [id, v] of Object.entries(dec as JsonObject)) {
    if (!/^\d{1,10}$/.test(id) || !isTokenId(Number(id))) {
      throw tokenizerFileError(file, `added_tokens_decoder key ${quoted(id)} is not a token id (an integer in 0…${MAX_TOKEN_ID})`);
    }
    const content = tokenContent(v);
    if (content === undefined || content === '') {
      throw tokenizerFileError(file, `added_tokens_decoder["${id}"]=${showValue(v)} is not a token (a non-empty string, or an object with a "content" string)`);
    }
    const o = v as JsonObject;
    out.push({ content, id: Number(id), lstrip: o.lstrip === true, rstrip: o.rstrip === true });
  }
  return out;
}

/** transformers' `model_max_length`: an integer; "no limit" (a huge float) and absent give `fallback`. */
export function modelMaxLength(config: JsonObject, fallback: number): number {
  const v = Number(config.model_max_length);
  return Number.isInteger(v) && v > 0 && v < 1e6 ? v : fallback;
}

/**
 * Splits raw text on added tokens: leftmost match wins, the longest token among those starting there
 * (what transformers' Trie.split yields). Empty text pieces are dropped, as transformers skips them.
 */
export function splitOnAddedTokens(text: string, tokens: readonly AddedToken[]): Segment[] {
  const out: Segment[] = [];
  if (tokens.length === 0) return text ? [{ text }] : [];
  let segStart = 0;
  let i = 0;
  while (i < text.length) {
    let best: AddedToken | undefined;
    for (const t of tokens) {
      if (t.content && text.startsWith(t.content, i) && (!best || t.content.length > best.content.length)) best = t;
    }
    if (!best) { i++; continue; }
    let left = text.slice(segStart, i);
    if (best.lstrip) left = left.trimEnd();
    if (left) out.push({ text: left });
    out.push({ id: best.id });
    i += best.content.length;
    if (best.rstrip) while (i < text.length && /\s/u.test(text[i])) i++;
    segStart = i;
  }
  const rest = text.slice(segStart);
  if (rest) out.push({ text: rest });
  return out;
}

/**
 * Truncates content ids, wraps them with special tokens and pads, for a whole batch.
 * `numSpecial` is how many ids `wrap` adds, so truncation leaves room for them (transformers semantics).
 */
export function batchEncode(
  contents: number[][], wrap: (ids: number[]) => number[], numSpecial: number,
  padId: number, maxLength: number, opts: TokenizeOptions,
): BatchEncoding {
  const truncation = opts.truncation ?? true;
  const padding = opts.padding ?? 'none';
  const truncated: boolean[] = [];
  const rows = contents.map((ids) => {
    const room = Math.max(0, maxLength - numSpecial);
    const cut = truncation && ids.length > room;
    truncated.push(cut);
    return wrap(cut ? ids.slice(0, room) : ids);
  });
  const target = padding === 'max_length' ? maxLength
    : padding === 'longest' ? Math.max(0, ...rows.map((r) => r.length)) : 0;
  const inputIds: number[][] = [];
  const attentionMask: number[][] = [];
  for (const r of rows) {
    const n = Math.max(0, target - r.length);
    inputIds.push(r.concat(new Array<number>(n).fill(padId)));
    attentionMask.push(new Array<number>(r.length).fill(1).concat(new Array<number>(n).fill(0)));
  }
  return { inputIds, attentionMask, truncated };
}

/** Report of {@link CLIPTokenizer.checkTruncation} / {@link T5Tokenizer.checkTruncation}. */
export interface TruncationReport {
  /** Tokens the prompt needs, special tokens included. */
  tokenCount: number;
  maxLength: number;
  truncated: boolean;
  /** The decoded part that does not fit ('' when nothing is cut). */
  removedText: string;
  /** A message fit for a warning, or '' when nothing is cut. */
  message: string;
}

/** Builds a TruncationReport from a prompt's content ids. */
export function truncationReport(
  content: number[], numSpecial: number, maxLength: number, decode: (ids: number[]) => string, what: string,
): TruncationReport {
  const tokenCount = content.length + numSpecial;
  const room = Math.max(0, maxLength - numSpecial);
  const truncated = content.length > room;
  const removedText = truncated ? decode(content.slice(room)) : '';
  // A warning quotes the start of what was cut: the rest of a 100,000-character prompt helps nobody.
  const message = truncated
    ? `prompt is too long for ${what}: ${tokenCount} tokens > ${maxLength}; this part was truncated: "${excerpt(removedText, SHOWN_CUT_CHARS)}"`
    : '';
  return { tokenCount, maxLength, truncated, removedText, message };
}
