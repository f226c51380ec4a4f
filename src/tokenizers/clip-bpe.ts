/**
 * CLIP byte-level BPE tokenizer, matching transformers' slow `CLIPTokenizer` when ftfy is not installed
 * (then transformers cleans text with a BasicTokenizer: control-char removal, whitespace collapse, CJK spacing,
 * NFC, lower-casing, no accent stripping, no punctuation split). Pure TypeScript: works in Node and browsers.
 */
import { readFileAt, readJsonAt } from '../io/location.js';
import type { NetOptions } from '../io/http-fetch.js';
import {
  type AddedToken, type BatchEncoding, type JsonObject, type TokenizeOptions, type TruncationReport,
  addedTokensFromConfig, batchEncode, jsonObject, modelMaxLength, specialToken, splitOnAddedTokens, tokenIdMap, tokenizerFile,
  tokenizerFileError, truncationReport,
} from './batch-encoding.js';
import { bpeMerge } from './bpe.js';
import { quoted } from '../io/json-scanner.js';

/** Parsed tokenizer files; what {@link CLIPTokenizer.fromDir} reads from a diffusers `tokenizer/` folder. */
export interface CLIPTokenizerFiles {
  /** vocab.json: token → id (checked: non-negative integer ids). */
  vocab: Record<string, number>;
  /** merges.txt, raw text (first line is the `#version` header). */
  merges: string;
  /** tokenizer_config.json. */
  config?: JsonObject;
  /** special_tokens_map.json (overrides `config` for special tokens, as in transformers). */
  specialTokensMap?: JsonObject;
  /** The folder or URL the files came from, named in errors. */
  source?: string;
}

// transformers reads at most this many merges (49152 vocab − 256 bytes − 2 specials).
const MAX_MERGES = 49152 - 256 - 2;
/** Pretokens (in byte-level chars) whose merges are cached, and how many: a prompt cannot grow the cache unboundedly. */
const CACHED_TOKEN_CHARS = 64;
const CACHE_ENTRIES = 20_000;
/** transformers' BPE cache starts with these, so they are never split (and take no `</w>`). */
const SPECIAL_PRETOKENS: ReadonlyMap<string, string[]> = new Map([['<|startoftext|>', ['<|startoftext|>']], ['<|endoftext|>', ['<|endoftext|>']]]);

// The pretokenization pattern of CLIP (contractions, letter runs, single digits, other non-space runs).
const PAT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

/** GPT-2 byte → printable unicode char table, so BPE never sees whitespace/control bytes. */
function byteEncoder(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  return table;
}

function isCJK(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df)
    || (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf)
    || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/**
 * The text cleanup transformers applies when ftfy is missing: drops NUL / U+FFFD / control chars, maps
 * whitespace to spaces, pads CJK ideographs with spaces, NFC-normalizes, lower-cases and collapses whitespace.
 */
export function clipBasicClean(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || /\p{Zs}/u.test(ch)) { out += ' '; continue; }
    if (cp === 0 || cp === 0xfffd || /\p{C}/u.test(ch)) continue;
    out += isCJK(cp) ? ` ${ch} ` : ch;
  }
  return out.normalize('NFC').split(/\s+/u).filter((w) => w.length > 0).map((w) => w.toLowerCase()).join(' ');
}

/** CLIP tokenizer (SD-1.x/2.x text encoder, both SDXL text encoders). */
export class CLIPTokenizer {
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string;
  readonly unkToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  /** `model_max_length` of tokenizer_config.json (77 for every CLIP text encoder). */
  readonly modelMaxLength: number;

  private readonly encoder: Map<string, number>;
  private readonly decoder: Map<number, string>;
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  private readonly added: AddedToken[];
  private readonly byteEnc = byteEncoder();
  private readonly byteDec = new Map<string, number>();

  /** Builds the tokenizer from already-parsed files (browser-friendly; see {@link CLIPTokenizer.fromDir}). */
  constructor(files: CLIPTokenizerFiles) {
    const config = files.config ?? {};
    const file = (name: string): string => tokenizerFile(files.source, name);
    this.encoder = tokenIdMap(files.vocab, file('vocab.json'));
    this.decoder = new Map([...this.encoder].map(([k, v]) => [v, k]));
    const lines = files.merges.trim().split('\n').slice(1, MAX_MERGES + 1);
    lines.forEach((line, rank) => {
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2 || !parts[0] || !parts[1]) {
        throw tokenizerFileError(file('merges.txt'), `line ${rank + 2} ${quoted(line)} is not a merge: expected two symbols separated by a space`);
      }
      // Like a Python dict built from zip(), a repeated merge keeps its last rank.
      this.ranks.set(`${parts[0]} ${parts[1]}`, rank);
    });
    this.byteEnc.forEach((c, b) => this.byteDec.set(c, b));

    const m = files.specialTokensMap;
    this.bosToken = specialToken('bos_token', config, m, '<|startoftext|>');
    this.eosToken = specialToken('eos_token', config, m, '<|endoftext|>');
    this.padToken = specialToken('pad_token', config, m, '<|endoftext|>');
    this.unkToken = specialToken('unk_token', config, m, '<|endoftext|>');
    const fromConfig = addedTokensFromConfig(config, file('tokenizer_config.json'));
    const idOf = (tok: string): number => {
      const id = fromConfig.find((t) => t.content === tok)?.id ?? this.encoder.get(tok);
      if (id === undefined) throw tokenizerFileError(file('vocab.json'), `the special token ${quoted(tok)} is not in the vocabulary`);
      return id;
    };
    this.unkTokenId = idOf(this.unkToken);
    this.bosTokenId = idOf(this.bosToken);
    this.eosTokenId = idOf(this.eosToken);
    this.padTokenId = idOf(this.padToken);
    // Every added/special token is matched verbatim in the raw text (e.g. SDXL tokenizer_2's pad "!").
    this.added = [...fromConfig];
    for (const [tok, id] of [[this.bosToken, this.bosTokenId], [this.eosToken, this.eosTokenId],
      [this.padToken, this.padTokenId], [this.unkToken, this.unkTokenId]] as const) {
      if (!this.added.some((t) => t.content === tok)) this.added.push({ content: tok, id, lstrip: false, rstrip: false });
    }
    // transformers stores "no limit" as a huge float; CLIP's text encoders all have 77 positions.
    this.modelMaxLength = modelMaxLength(config, 77);
  }

  /** Loads vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json from a folder (Node). */
  static async fromDir(dir: string, opts: NetOptions = {}): Promise<CLIPTokenizer> {
    const vocab = await readJsonAt<JsonObject>(dir, 'vocab.json', opts);
    const merges = await readFileAt(dir, 'merges.txt', opts);
    if (vocab === undefined || !merges) throw new Error(`${dir}: a CLIP tokenizer needs vocab.json and merges.txt`);
    return new CLIPTokenizer({
      vocab: vocab as Record<string, number>,
      merges: new TextDecoder().decode(merges),
      config: jsonObject(await readJsonAt(dir, 'tokenizer_config.json', opts), tokenizerFile(dir, 'tokenizer_config.json')),
      specialTokensMap: jsonObject(await readJsonAt(dir, 'special_tokens_map.json', opts), tokenizerFile(dir, 'special_tokens_map.json')),
      source: dir,
    });
  }

  /** Number of ids in vocab.json. */
  get vocabSize(): number { return this.encoder.size; }

  /** BPE of one byte-encoded pretoken; the last symbol carries the `</w>` word end. */
  private bpe(token: string): string[] {
    const hit = SPECIAL_PRETOKENS.get(token) ?? this.cache.get(token);
    if (hit) return hit;
    const symbols = [...token];
    symbols[symbols.length - 1] += '</w>';
    const word = bpeMerge(symbols, (a, b) => this.ranks.get(`${a} ${b}`));
    if (token.length <= CACHED_TOKEN_CHARS) {
      if (this.cache.size >= CACHE_ENTRIES) this.cache.clear();
      this.cache.set(token, word);
    }
    return word;
  }

  /** BPE tokens (strings) of a text piece without added tokens. */
  private tokenizePiece(text: string): string[] {
    const out: string[] = [];
    for (const m of clipBasicClean(text).matchAll(PAT)) {
      let enc = '';
      for (const b of new TextEncoder().encode(m[0])) enc += this.byteEnc[b];
      // One pretoken can be 100,000 symbols long: no spread into push's arguments.
      for (const t of this.bpe(enc)) out.push(t);
    }
    return out;
  }

  /** Token ids of `text`, without bos/eos, padding or truncation. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const seg of splitOnAddedTokens(text, this.added)) {
      if ('id' in seg) { ids.push(seg.id); continue; }
      for (const t of this.tokenizePiece(seg.text)) ids.push(this.encoder.get(t) ?? this.unkTokenId);
    }
    return ids;
  }

  /** Tokens `text` needs with bos and eos, before any truncation. */
  tokenCount(text: string): number { return this.encode(text).length + 2; }

  /** Whether `text` fits `maxLength` (default `modelMaxLength`) and, if not, which part gets cut. */
  checkTruncation(text: string, maxLength = this.modelMaxLength): TruncationReport {
    return truncationReport(this.encode(text), 2, maxLength, (ids) => this.decode(ids), 'the CLIP text encoder');
  }

  /** Ids back to text (special tokens kept; `</w>` becomes a space). */
  decode(ids: number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      for (const ch of this.decoder.get(id) ?? '') {
        const b = this.byteDec.get(ch);
        if (b !== undefined) bytes.push(b);
      }
    }
    // '</w>' is plain ASCII in the byte-encoded alphabet, so it survives the byte round trip.
    return new TextDecoder().decode(new Uint8Array(bytes)).replaceAll('</w>', ' ').trim();
  }

  /**
   * Tokenizes a batch like `tokenizer(texts, padding=..., max_length=..., truncation=...)`: each row is
   * `bos, content…, eos`, truncated to `maxLength` (content cut, eos kept) and padded with the pad token.
   */
  call(texts: string[], opts: TokenizeOptions = {}): BatchEncoding {
    return batchEncode(
      texts.map((t) => this.encode(t)), (ids) => [this.bosTokenId, ...ids, this.eosTokenId], 2,
      this.padTokenId, opts.maxLength ?? this.modelMaxLength, opts,
    );
  }
}
