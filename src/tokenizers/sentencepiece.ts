/**
 * Minimal SentencePiece unigram model: reads the `spiece.model` ModelProto (only the fields encoding needs),
 * normalizes with its precompiled charsmap (a Darts-clone double-array trie, e.g. nmt_nfkc) and segments with
 * the unigram Viterbi search, following sentencepiece's normalizer.cc / unigram_model.cc / processor semantics.
 */

/** SentencePiece piece types (ModelProto.SentencePiece.Type). */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export interface SpPiece { piece: string; score: number; type: PieceType }

/** The ModelProto fields this project uses. */
export interface SpModelProto {
  pieces: SpPiece[];
  /** TrainerSpec.model_type: 1 = unigram (the only kind supported here). */
  modelType: number;
  unkId: number; bosId: number; eosId: number; padId: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  normalizerName: string;
  precompiledCharsmap?: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** Tiny protobuf wire-format reader: yields (field, wire type, value) of one message. */
function* protoFields(buf: Uint8Array): Generator<[number, number, number | Uint8Array]> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  // Varints keep their low 32 bits only: every field read here is an int32/enum/bool/length.
  const varint = (): number => {
    let lo = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= buf.length) throw new Error('truncated varint: not a SentencePiece model, or a truncated one');
      const b = buf[p++];
      if (shift < 32) lo |= (b & 0x7f) << shift;
      if (b < 0x80) return lo >>> 0;
    }
  };
  while (p < buf.length) {
    const key = varint();
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield [field, wire, varint()];
    else if (wire === 1) { p += 8; }
    else if (wire === 2) { const n = varint(); yield [field, wire, buf.subarray(p, p + n)]; p += n; }
    else if (wire === 5) {
      if (p + 4 > buf.length) throw new Error('truncated message: not a SentencePiece model, or a truncated one');
      yield [field, wire, dv.getFloat32(p, true)];
      p += 4;
    }
    else throw new Error(`protobuf wire type ${wire} is not valid: not a SentencePiece model`);
    if (p > buf.length) throw new Error('truncated message: not a SentencePiece model, or a truncated one');
  }
}

/** Parses a `spiece.model` file; an error (without the file's name) when it is not a usable unigram model. */
export function parseSpModel(buf: Uint8Array): SpModelProto {
  return checkSpModel(readSpModel(buf));
}

/** What sentencepiece requires of a model before encoding with it (model_interface / unigram_model checks). */
function checkSpModel(m: SpModelProto): SpModelProto {
  if (m.pieces.length === 0) throw new Error('the model has no pieces (not a SentencePiece model?)');
  m.pieces.forEach((p, id) => {
    if (!(p.type >= PieceType.NORMAL && p.type <= PieceType.BYTE)) throw new Error(`piece ${id} has an unknown type ${p.type}`);
    if (!Number.isFinite(p.score)) throw new Error(`piece ${id} has a score of ${p.score}`);
    if (p.piece === '') throw new Error(`piece ${id} is empty`);
  });
  if (!(m.unkId >= 0 && m.unkId < m.pieces.length) || m.pieces[m.unkId].type !== PieceType.UNKNOWN) {
    throw new Error(`unk_id ${m.unkId} is not a piece of type UNKNOWN`);
  }
  return m;
}

function readSpModel(buf: Uint8Array): SpModelProto {
  const td = new TextDecoder();
  const m: SpModelProto = {
    pieces: [], modelType: 1, unkId: 0, bosId: 1, eosId: 2, padId: -1, byteFallback: false,
    treatWhitespaceAsSuffix: false, normalizerName: '', addDummyPrefix: true, removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  for (const [f, , v] of protoFields(buf)) {
    if (!(v instanceof Uint8Array)) continue;
    if (f === 1) {
      const piece: SpPiece = { piece: '', score: 0, type: PieceType.NORMAL };
      for (const [g, , w] of protoFields(v)) {
        if (g === 1 && w instanceof Uint8Array) piece.piece = td.decode(w);
        else if (g === 2 && typeof w === 'number') piece.score = w;
        else if (g === 3 && typeof w === 'number') piece.type = w as PieceType;
      }
      m.pieces.push(piece);
    } else if (f === 2) {
      for (const [g, , w] of protoFields(v)) {
        if (typeof w !== 'number') continue;
        if (g === 3) m.modelType = w;
        else if (g === 24) m.treatWhitespaceAsSuffix = w !== 0;
        else if (g === 35) m.byteFallback = w !== 0;
        else if (g === 40) m.unkId = w | 0;
        else if (g === 41) m.bosId = w | 0;
        else if (g === 42) m.eosId = w | 0;
        else if (g === 43) m.padId = w | 0;
      }
    } else if (f === 3) {
      for (const [g, , w] of protoFields(v)) {
        if (g === 1 && w instanceof Uint8Array) m.normalizerName = td.decode(w);
        else if (g === 2 && w instanceof Uint8Array) m.precompiledCharsmap = w;
        else if (g === 3 && typeof w === 'number') m.addDummyPrefix = w !== 0;
        else if (g === 4 && typeof w === 'number') m.removeExtraWhitespaces = w !== 0;
        else if (g === 5 && typeof w === 'number') m.escapeWhitespaces = w !== 0;
      }
    }
  }
  return m;
}

/** Length in bytes of the valid UTF-8 char at `p`, or 0 when malformed. */
function utf8Len(b: Uint8Array, p: number): number {
  const c = b[p];
  const n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
  if (n === 0 || p + n > b.length) return 0;
  for (let i = 1; i < n; i++) if ((b[p + i] & 0xc0) !== 0x80) return 0;
  return n;
}

/**
 * Longest input a charsmap rule may match. sentencepiece looks ahead without limit, but its rules are NFKC
 * mappings of a few characters; a crafted trie that matched any input would make normalization quadratic.
 */
const MAX_RULE_BYTES = 1024;

const SPACE = new TextEncoder().encode('\u2581');
const REPLACEMENT = new TextEncoder().encode('\ufffd');

/** SentencePiece's Normalizer (precompiled charsmap + whitespace handling), on UTF-8 bytes. */
export class SpNormalizer {
  private readonly units?: Uint32Array;
  private readonly strings?: Uint8Array;

  private readonly userDefined: Uint8Array[];

  /** `userDefined`: USER_DEFINED pieces, which are never rewritten by the charsmap. */
  constructor(private readonly spec: SpModelProto, userDefined: string[] = []) {
    this.userDefined = userDefined.map((u) => new TextEncoder().encode(u)).filter((u) => u.length > 0);
    const blob = spec.precompiledCharsmap;
    if (blob && blob.length > 4) {
      const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
      const trieSize = dv.getUint32(0, true);
      if (trieSize >= blob.length || trieSize % 4 !== 0) throw new Error('the precompiled charsmap is broken');
      // Copy so the Uint32Array is aligned whatever the blob's offset in the file.
      this.units = new Uint32Array(blob.slice(4, 4 + trieSize).buffer);
      this.strings = blob.subarray(4 + trieSize);
    }
  }

  /** Longest charsmap rule matching at `p`: [replacement bytes, consumed bytes] or undefined. */
  private lookup(b: Uint8Array, p: number): [Uint8Array, number] | undefined {
    const a = this.units;
    if (!a || !this.strings) return undefined;
    // Darts-clone commonPrefixSearch; unit bits: label, has_leaf (bit 8), offset (bits 10+, scaled by bit 9).
    const offset = (u: number): number => (u >>> 10) << ((u & (1 << 9)) >>> 6);
    let node = offset(a[0]);
    let best: [number, number] | undefined;
    for (let i = p; i < Math.min(b.length, p + MAX_RULE_BYTES); i++) {
      node ^= b[i];
      const u = a[node];
      if (u === undefined || (u & 0x800000ff) >>> 0 !== b[i]) break;
      node ^= offset(u);
      if ((u >>> 8) & 1) best = [a[node] & 0x7fffffff, i + 1 - p];
    }
    if (!best) return undefined;
    let end = best[0];
    while (end < this.strings.length && this.strings[end] !== 0) end++;
    return [this.strings.subarray(best[0], end), best[1]];
  }

  /** One normalization step at `p`: user-defined symbol, charsmap rule or the char as-is. */
  private prefix(b: Uint8Array, p: number): [Uint8Array, number] {
    let n = 0;
    for (const u of this.userDefined) {
      if (u.length > n && p + u.length <= b.length && u.every((x, i) => b[p + i] === x)) n = u.length;
    }
    if (n > 0) return [b.subarray(p, p + n), n];
    const rule = this.lookup(b, p);
    if (rule) return rule;
    const len = utf8Len(b, p);
    // A malformed byte becomes U+FFFD but only that one byte is consumed.
    return len === 0 ? [REPLACEMENT, 1] : [b.subarray(p, p + len), len];
  }

  /** Normalizes `text` into the string the unigram lattice is built on (spaces become "▁"). */
  normalize(text: string): string {
    const spec = this.spec;
    const b = new TextEncoder().encode(text);
    const td = new TextDecoder();
    const out: number[] = [];
    const isSpaceOnly = (s: Uint8Array): boolean => s.length === 1 && s[0] === 0x20;
    let p = 0;
    if (spec.removeExtraWhitespaces) {
      while (p < b.length) {
        const [s, n] = this.prefix(b, p);
        if (!isSpaceOnly(s)) break;
        p += n;
      }
    }
    if (p >= b.length) return '';
    const addWs = (): void => { if (spec.escapeWhitespaces) out.push(...SPACE); else out.push(0x20); };
    if (!spec.treatWhitespaceAsSuffix && spec.addDummyPrefix) addWs();
    let prevSpace = spec.removeExtraWhitespaces;
    while (p < b.length) {
      const [s, n] = this.prefix(b, p);
      let k = 0;
      while (prevSpace && k < s.length && s[k] === 0x20) k++;
      if (k < s.length) {
        for (let i = k; i < s.length; i++) {
          if (spec.escapeWhitespaces && s[i] === 0x20) out.push(...SPACE); else out.push(s[i]);
        }
        prevSpace = s[s.length - 1] === 0x20;
      }
      p += n;
      if (!spec.removeExtraWhitespaces) prevSpace = false;
    }
    let res = td.decode(new Uint8Array(out));
    if (spec.removeExtraWhitespaces) {
      const sp = spec.escapeWhitespaces ? '\u2581' : ' ';
      while (res.endsWith(sp)) res = res.slice(0, -sp.length);
    }
    if (spec.treatWhitespaceAsSuffix && spec.addDummyPrefix) res += spec.escapeWhitespaces ? '\u2581' : ' ';
    return res;
  }
}
