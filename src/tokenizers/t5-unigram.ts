/**
 * T5 tokenizer (PixArt's text encoder) from a SentencePiece unigram `spiece.model`, matching transformers' slow
 * `T5Tokenizer` in its default `legacy` mode: added tokens (`</s>`, `<extra_id_N>`, ...) are split out of the
 * raw text first, each remaining piece is normalized and segmented by SentencePiece, and `</s>` is appended.
 */
import { readFileAt, readJsonAt } from '../io/location.js';
import type { NetOptions } from '../io/http-fetch.js';
import {
  type AddedToken, type BatchEncoding, type JsonObject, type TokenizeOptions, type TruncationReport,
  addedTokensFromConfig, batchEncode, jsonObject, modelMaxLength, specialToken, splitOnAddedTokens, tokenIdMap, tokenizerFile,
  tokenizerFileError, truncationReport,
} from './batch-encoding.js';
import { showValue } from '../io/config.js';
import { PieceType, SpNormalizer, type SpModelProto, parseSpModel } from './sentencepiece.js';

/** Parsed tokenizer files; what {@link T5Tokenizer.fromDir} reads from a diffusers `tokenizer/` folder. */
export interface T5TokenizerFiles {
  /** spiece.model bytes or an already parsed model. */
  spModel: Uint8Array | SpModelProto;
  /** tokenizer_config.json. */
  config?: JsonObject;
  /** special_tokens_map.json (overrides `config` for special tokens, as in transformers). */
  specialTokensMap?: JsonObject;
  /** added_tokens.json: token → id (older saves keep the `<extra_id_N>` ids there). */
  addedTokens?: Record<string, number>;
  /** The folder or URL the files came from, named in errors. */
  source?: string;
}

/** Most `extra_ids` (sentinel tokens) accepted: T5 has 100. */
const MAX_EXTRA_IDS = 10_000;

interface TrieNode { next: Map<number, TrieNode>; id: number }

/** The smallest positive float32: sentencepiece starts its max-score search from FLT_MIN, not -inf. */
const FLT_MIN = 1.1754943508222875e-38;
/** Score penalty of an unknown char relative to the worst piece (sentencepiece kUnkPenalty). */
const UNK_PENALTY = 10;

/** T5 SentencePiece-unigram tokenizer. */
export class T5Tokenizer {
  readonly eosToken: string;
  readonly padToken: string;
  readonly unkToken: string;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  /** `model_max_length` of tokenizer_config.json (512 if absent; PixArt pipelines use 120). */
  readonly modelMaxLength: number;
  /** SentencePiece pieces plus `extra_ids`, as transformers' `vocab_size`. */
  readonly vocabSize: number;

  private readonly model: SpModelProto;
  private readonly normalizer: SpNormalizer;
  private readonly pieceIds = new Map<string, number>();
  private readonly idToToken = new Map<number, string>();
  private readonly trie: TrieNode = { next: new Map(), id: -1 };
  private readonly added: AddedToken[];
  private readonly minScore: number;
  private readonly maxScore: number;

  /** Builds the tokenizer from already-loaded files (browser-friendly; see {@link T5Tokenizer.fromDir}). */
  constructor(files: T5TokenizerFiles) {
    const config = files.config ?? {};
    const file = (name: string): string => tokenizerFile(files.source, name);
    let model: SpModelProto;
    try {
      model = files.spModel instanceof Uint8Array ? parseSpModel(files.spModel) : files.spModel;
      if (model.modelType !== 1) throw new Error(`model_type is ${model.modelType}; only unigram (1) is supported`);
      this.normalizer = new SpNormalizer(model, model.pieces.filter((p) => p.type === PieceType.USER_DEFINED).map((p) => p.piece));
    } catch (e) {
      throw tokenizerFileError(file('spiece.model'), (e as Error).message);
    }
    this.model = model;
    let minScore = Infinity;
    let maxScore = FLT_MIN;
    model.pieces.forEach((p, id) => {
      if (!this.pieceIds.has(p.piece)) this.pieceIds.set(p.piece, id);
      this.idToToken.set(id, p.piece);
      if (p.type === PieceType.NORMAL) { minScore = Math.min(minScore, p.score); maxScore = Math.max(maxScore, p.score); }
      // Only these types take part in segmentation (unused ones are matched but then skipped).
      if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED) {
        let node = this.trie;
        for (const ch of p.piece) {
          const cp = ch.codePointAt(0)!;
          let nx = node.next.get(cp);
          if (!nx) { nx = { next: new Map(), id: -1 }; node.next.set(cp, nx); }
          node = nx;
        }
        if (node.id < 0) node.id = id;
      }
    });
    this.minScore = minScore;
    this.maxScore = maxScore;

    const m = files.specialTokensMap;
    this.eosToken = specialToken('eos_token', config, m, '</s>');
    this.padToken = specialToken('pad_token', config, m, '<pad>');
    this.unkToken = specialToken('unk_token', config, m, '<unk>');
    const extraIds = (config.extra_ids ?? 100) as number;
    if (!Number.isInteger(extraIds) || extraIds < 0 || extraIds > MAX_EXTRA_IDS) {
      throw tokenizerFileError(file('tokenizer_config.json'), `extra_ids=${showValue(config.extra_ids)} is invalid: expected an integer in 0…${MAX_EXTRA_IDS}`);
    }
    this.vocabSize = model.pieces.length + extraIds;

    // Added tokens: config's added_tokens_decoder, then added_tokens.json, then transformers' default
    // `<extra_id_i>` → vocab_size − 1 − i numbering, then the special tokens themselves.
    const added = addedTokensFromConfig(config, file('tokenizer_config.json'));
    const has = (c: string): boolean => added.some((t) => t.content === c);
    for (const [content, id] of files.addedTokens === undefined ? [] : tokenIdMap(files.addedTokens, file('added_tokens.json'))) {
      if (!has(content)) added.push({ content, id, lstrip: true, rstrip: true });
    }
    for (let i = 0; i < extraIds; i++) {
      const content = `<extra_id_${i}>`;
      if (!has(content)) added.push({ content, id: this.vocabSize - 1 - i, lstrip: true, rstrip: true });
    }
    const idOf = (tok: string, fallback: number): number =>
      added.find((t) => t.content === tok)?.id ?? this.pieceIds.get(tok) ?? fallback;
    this.unkTokenId = idOf(this.unkToken, model.unkId);
    this.eosTokenId = idOf(this.eosToken, model.eosId);
    this.padTokenId = idOf(this.padToken, Math.max(0, model.padId));
    for (const [content, id] of [[this.eosToken, this.eosTokenId], [this.padToken, this.padTokenId],
      [this.unkToken, this.unkTokenId]] as const) {
      if (!has(content)) added.push({ content, id, lstrip: false, rstrip: false });
    }
    for (const t of added) if (!this.idToToken.has(t.id)) this.idToToken.set(t.id, t.content);
    this.added = added;
    this.modelMaxLength = modelMaxLength(config, 512);
  }

  /** Loads spiece.model, tokenizer_config.json, special_tokens_map.json and added_tokens.json (Node). */
  static async fromDir(dir: string, opts: NetOptions = {}): Promise<T5Tokenizer> {
    const spModel = await readFileAt(dir, 'spiece.model', opts);
    if (!spModel) throw new Error(`${dir}: a T5 tokenizer needs spiece.model`);
    return new T5Tokenizer({
      spModel,
      config: jsonObject(await readJsonAt(dir, 'tokenizer_config.json', opts), tokenizerFile(dir, 'tokenizer_config.json')),
      specialTokensMap: jsonObject(await readJsonAt(dir, 'special_tokens_map.json', opts), tokenizerFile(dir, 'special_tokens_map.json')),
      addedTokens: (await readJsonAt(dir, 'added_tokens.json', opts)) as Record<string, number> | undefined,
      source: dir,
    });
  }

  /** SentencePiece normalization of `text` (e.g. nmt_nfkc plus "▁" word boundaries). */
  normalize(text: string): string { return this.normalizer.normalize(text); }

  /** Viterbi segmentation of a normalized string into piece ids (sentencepiece EncodeOptimized). */
  private segment(norm: string): number[] {
    const chars = [...norm];
    const n = chars.length;
    const cps = chars.map((c) => c.codePointAt(0)!);
    const utf8 = chars.map((c) => new TextEncoder().encode(c).length);
    const bestScore = new Float64Array(n + 1);
    const startsAt = new Int32Array(n + 1).fill(-1);
    const bestId = new Int32Array(n + 1).fill(-1);
    const unkScore = Math.fround(this.minScore - UNK_PENALTY);
    for (let s = 0; s < n; s++) {
      const till = bestScore[s];
      let hasSingle = false;
      let node: TrieNode | undefined = this.trie;
      let bytes = 0;
      for (let e = s; e < n && node; e++) {
        node = node.next.get(cps[e]);
        bytes += utf8[e];
        if (!node || node.id < 0) continue;
        const piece = this.model.pieces[node.id];
        if (piece.type === PieceType.UNUSED) continue;
        // sentencepiece adds in double (the user-defined branch is double) and stores the best as float.
        const score = piece.type === PieceType.USER_DEFINED ? bytes * this.maxScore - 0.1 : piece.score;
        const cand = score + till;
        if (startsAt[e + 1] === -1 || cand > bestScore[e + 1]) {
          bestScore[e + 1] = Math.fround(cand); startsAt[e + 1] = s; bestId[e + 1] = node.id;
        }
        if (e === s) hasSingle = true;
      }
      if (!hasSingle) {
        const cand = Math.fround(unkScore + till);
        if (startsAt[s + 1] === -1 || cand > bestScore[s + 1]) {
          bestScore[s + 1] = cand; startsAt[s + 1] = s; bestId[s + 1] = this.model.unkId;
        }
      }
    }
    const spans: [number, number, number][] = [];
    for (let e = n; e > 0; e = startsAt[e]) spans.push([startsAt[e], e, bestId[e]]);
    spans.reverse();
    const ids: number[] = [];
    let prevUnk = false;
    for (const [s, e, id] of spans) {
      const unk = id === this.model.unkId;
      if (unk && this.model.byteFallback) {
        for (const b of new TextEncoder().encode(chars.slice(s, e).join(''))) {
          const hex = b.toString(16).toUpperCase().padStart(2, '0');
          ids.push(this.pieceIds.get(`<0x${hex}>`) ?? this.unkTokenId);
        }
      } else if (!(unk && prevUnk)) {
        // sentencepiece merges a run of unknown chars into one unknown piece.
        ids.push(unk ? this.unkTokenId : id);
      }
      prevUnk = unk;
    }
    return ids;
  }

  /** Token ids of `text`, without `</s>`, padding or truncation. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const seg of splitOnAddedTokens(text, this.added)) {
      if ('id' in seg) ids.push(seg.id);
      // No spread into push's arguments: a long prompt is 100,000 ids.
      else for (const id of this.segment(this.normalizer.normalize(seg.text))) ids.push(id);
    }
    return ids;
  }

  /** Appends `</s>` unless the ids already end with it (transformers warns and skips it then). */
  private withEos(ids: number[]): number[] {
    return ids.length > 0 && ids[ids.length - 1] === this.eosTokenId ? ids : [...ids, this.eosTokenId];
  }

  /** Tokens `text` needs with `</s>`, before any truncation. */
  tokenCount(text: string): number { return this.withEos(this.encode(text)).length; }

  /** Whether `text` fits `maxLength` (default `modelMaxLength`) and, if not, which part gets cut. */
  checkTruncation(text: string, maxLength = this.modelMaxLength): TruncationReport {
    return truncationReport(this.encode(text), 1, maxLength, (ids) => this.decode(ids), 'the T5 text encoder');
  }

  /** Ids back to text ("▁" becomes a space; special tokens kept). */
  decode(ids: number[]): string {
    return ids.map((id) => this.idToToken.get(id) ?? this.unkToken).join('').replaceAll('\u2581', ' ').trim();
  }

  /**
   * Tokenizes a batch like `tokenizer(texts, padding=..., max_length=..., truncation=...)`: content…, `</s>`,
   * truncated to `maxLength` (content cut, `</s>` kept) and padded with `<pad>` (mask 0).
   */
  call(texts: string[], opts: TokenizeOptions = {}): BatchEncoding {
    return batchEncode(
      texts.map((t) => this.encode(t)), (ids) => this.withEos(ids), 1,
      this.padTokenId, opts.maxLength ?? this.modelMaxLength, opts,
    );
  }
}
