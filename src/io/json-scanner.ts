/**
 * A bounded JSON reader over UTF-8 bytes, for the JSON inside weight files (safetensors headers, TF.js
 * `model.json`), which are untrusted and may be up to 100 MB.
 *
 * Why not `JSON.parse`: it keeps the last of duplicate keys (a safetensors header with two entries for one
 * tensor is silently half-read), it builds any structure before we can look at it (a 100 MB header of `[`
 * takes minutes and gigabytes), and it accepts `1.0` where the reference reader wants an integer. Here the
 * caller drives the reading with its schema (`object`, `array`, `string`, `integerToken`), nesting is bounded,
 * duplicate keys are an error, strings are checked as UTF-8, and nothing is built for values that are skipped.
 */

/** Why a document was refused: `syntax` (not JSON, or not UTF-8) or `limit` (JSON, but past a bound). */
export class JsonScanError extends Error {
  constructor(readonly kind: 'syntax' | 'limit', message: string) {
    super(message);
    this.name = 'JsonScanError';
  }
}

/** Longest excerpt of an offending value put in a message. */
const EXCERPT_CHARS = 200;

/** `s` cut to about 200 characters for an error message, saying how much was left out. */
export function excerpt(s: string, max = EXCERPT_CHARS): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
}

/** `s` quoted for a message, cut to about 200 characters. */
export const quoted = (s: string): string => `"${excerpt(s)}"`;

const WS = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WS[c] = 1;
const ESCAPES: Record<number, string> = { 0x22: '"', 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' };
const utf8 = new TextDecoder('utf-8');
const LITERALS = [['true', true], ['false', false], ['null', null]] as const;
const PYTHON_LITERALS = [...LITERALS, ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]] as const;

/** Index of the first byte of an invalid UTF-8 sequence in b[from, to), or -1 (overlongs and surrogates are invalid). */
function invalidUtf8At(b: Uint8Array, from: number, to: number): number {
  let i = from;
  while (i < to) {
    const c = b[i];
    if (c < 0x80) { i++; continue; }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) { n = 2; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
    else return i;
    if (i + n >= to) return i;
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k <= n; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return -1;
}

/** What a byte looks like in a message. */
function showByte(c: number | undefined): string {
  if (c === undefined) return 'the end';
  return c >= 0x21 && c < 0x7f ? `"${String.fromCharCode(c)}"` : `byte 0x${c.toString(16).padStart(2, '0')}`;
}

/** Reads JSON from `bytes`, one value at a time, as its caller's schema directs. */
export class JsonScanner {
  pos = 0;

  /** @param pythonLiterals accept `NaN`, `Infinity` and `-Infinity`, as Python's json module writes them. */
  constructor(private readonly b: Uint8Array, private readonly maxDepth: number, private readonly pythonLiterals = false) {}

  fail(kind: 'syntax' | 'limit', problem: string, at = this.pos): never {
    throw new JsonScanError(kind, `${problem} at byte ${at}`);
  }

  /** The next non-whitespace byte (not consumed), or -1 at the end. */
  peek(): number {
    const b = this.b;
    while (this.pos < b.length && WS[b[this.pos]]) this.pos++;
    return this.pos < b.length ? b[this.pos] : -1;
  }

  private expect(c: number, what: string): void {
    if (this.peek() !== c) this.fail('syntax', `expected ${what}, found ${showByte(this.b[this.pos])}`);
    this.pos++;
  }

  /** What kind of value comes next, for messages: "a string", "an object"… */
  describeNext(): string {
    const c = this.peek();
    if (c === 0x22) return 'a string';
    if (c === 0x7b) return 'an object';
    if (c === 0x5b) return 'a list';
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return 'a number';
    if (c === 0x74 || c === 0x66) return 'a boolean';
    if (c === 0x6e) return 'null';
    return showByte(this.b[this.pos]);
  }

  /** Checks that only whitespace follows the document. */
  end(): void {
    if (this.peek() !== -1) this.fail('syntax', `unexpected ${showByte(this.b[this.pos])} after the JSON value`);
  }

  /** Checks the depth of a value about to be entered at `depth` (the document is depth 1). */
  private enter(depth: number): void {
    if (depth > this.maxDepth) this.fail('limit', `nested deeper than ${this.maxDepth} levels`);
  }

  /**
   * Reads an object, calling `member(key)` after each key's colon; `member` must read the value. Duplicate
   * keys and keys longer than `maxKeyBytes` (UTF-8) are errors.
   */
  object(depth: number, member: (key: string) => void, maxKeyBytes = Infinity): void {
    this.enter(depth);
    this.expect(0x7b, '"{"');
    const seen = new Set<string>();
    if (this.peek() === 0x7d) { this.pos++; return; }
    for (;;) {
      if (this.peek() !== 0x22) this.fail('syntax', `expected a key string, found ${showByte(this.b[this.pos])}`);
      const at = this.pos;
      const key = this.string(maxKeyBytes, 'name');
      if (seen.has(key)) this.fail('syntax', `duplicate key ${quoted(key)}`, at);
      seen.add(key);
      this.expect(0x3a, '":"');
      member(key);
      if (this.peek() === 0x2c) { this.pos++; continue; }
      this.expect(0x7d, '"," or "}"');
      return;
    }
  }

  /** Reads a list, calling `item(index)` for each element; `item` must read the element. */
  array(depth: number, item: (index: number) => void): void {
    this.enter(depth);
    this.expect(0x5b, '"["');
    if (this.peek() === 0x5d) { this.pos++; return; }
    for (let i = 0; ; i++) {
      item(i);
      if (this.peek() === 0x2c) { this.pos++; continue; }
      this.expect(0x5d, '"," or "]"');
      return;
    }
  }

  /** Reads a string (the next value must be one), at most `maxBytes` UTF-8 bytes between its quotes. */
  string(maxBytes = Infinity, what = 'string'): string {
    this.expect(0x22, 'a string');
    const b = this.b;
    const start = this.pos;
    let i = start;
    let ascii = true;
    let escaped = false;
    while (i < b.length) {
      const c = b[i];
      if (c === 0x22) break;
      if (c === 0x5c) { escaped = true; i += 2; continue; }
      if (c < 0x20) this.fail('syntax', `control character ${showByte(c)} in a string`, i);
      if (c >= 0x80) ascii = false;
      i++;
    }
    if (i >= b.length) this.fail('syntax', 'unterminated string', start - 1);
    if (i - start > maxBytes) this.fail('limit', `${what} of ${i - start} bytes is longer than the ${maxBytes}-byte limit`, start - 1);
    if (!ascii) {
      const bad = invalidUtf8At(b, start, i);
      if (bad >= 0) this.fail('syntax', 'invalid UTF-8 in a string', bad);
    }
    this.pos = i + 1;
    if (!escaped) return utf8.decode(b.subarray(start, i));
    return this.unescape(start, i);
  }

  private unescape(start: number, stop: number): string {
    const b = this.b;
    let out = '';
    let run = start;
    let i = start;
    while (i < stop) {
      if (b[i] !== 0x5c) { i++; continue; }
      out += utf8.decode(b.subarray(run, i));
      const e = b[i + 1];
      if (e === 0x75) {
        let code = this.hex4(i + 2);
        i += 6;
        if (code >= 0xd800 && code <= 0xdbff && b[i] === 0x5c && b[i + 1] === 0x75) {
          const low = this.hex4(i + 2);
          if (low >= 0xdc00 && low <= 0xdfff) { code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00); i += 6; }
        }
        if (code >= 0xd800 && code <= 0xdfff) this.fail('syntax', 'lone surrogate in a \\u escape', i - 6);
        out += String.fromCodePoint(code);
      } else {
        const ch = ESCAPES[e];
        if (ch === undefined) this.fail('syntax', `invalid escape "\\${String.fromCharCode(e)}"`, i);
        out += ch;
        i += 2;
      }
      run = i;
    }
    return out + utf8.decode(b.subarray(run, stop));
  }

  private hex4(at: number): number {
    const s = String.fromCharCode(...this.b.subarray(at, at + 4));
    if (!/^[0-9a-fA-F]{4}$/.test(s)) this.fail('syntax', 'invalid \\u escape', at - 2);
    return parseInt(s, 16);
  }

  /** Reads a number (the next value must be one) and returns its text, checked against JSON's grammar. */
  numberToken(): string {
    this.peek();
    const b = this.b;
    const start = this.pos;
    let i = start;
    const digits = (): number => { const s = i; while (b[i] >= 0x30 && b[i] <= 0x39) i++; return i - s; };
    if (b[i] === 0x2d) i++;
    if (b[i] === 0x30) i++;
    else if (!digits()) this.fail('syntax', `expected a value, found ${showByte(b[start])}`, start);
    if (b[i] === 0x2e) { i++; if (!digits()) this.fail('syntax', 'malformed number', start); }
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++;
      if (b[i] === 0x2b || b[i] === 0x2d) i++;
      if (!digits()) this.fail('syntax', 'malformed number', start);
    }
    this.pos = i;
    return String.fromCharCode(...b.subarray(start, Math.min(i, start + 64))) + (i - start > 64 ? '…' : '');
  }

  /**
   * Reads a number when one comes next (`undefined`, nothing consumed, otherwise). `value` is set when it is a
   * non-negative integer written as digits only (as serde reads a `usize`: `1.0` and `1e0` are not integers)
   * that is a safe JS integer; `text` is the number as written (cut to 64 characters), for messages.
   */
  integerToken(): { value?: number; text: string } | undefined {
    const c = this.peek();
    if (c !== 0x2d && !(c >= 0x30 && c <= 0x39)) return undefined;
    // Fast path, no strings: plain digits without a leading zero, followed by no fraction or exponent.
    const b = this.b;
    let i = this.pos;
    let v = 0;
    while (b[i] >= 0x30 && b[i] <= 0x39 && i - this.pos < 16) v = v * 10 + b[i++] - 0x30;
    const n = i - this.pos;
    if (n > 0 && !(b[this.pos] === 0x30 && n > 1) && !(b[i] >= 0x30 && b[i] <= 0x39) && b[i] !== 0x2e && b[i] !== 0x65 && b[i] !== 0x45
      && Number.isSafeInteger(v)) {
      this.pos = i;
      return { value: v, text: String(v) };
    }
    const text = this.numberToken();
    const x = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
    return { value: Number.isSafeInteger(x) ? x : undefined, text };
  }

  /** Reads and discards any value, checking its syntax and nesting; nothing is built. */
  skip(depth: number): void {
    const c = this.peek();
    if (c === 0x7b) this.object(depth, () => this.skip(depth + 1));
    else if (c === 0x5b) this.array(depth, () => this.skip(depth + 1));
    else if (c === 0x22) this.string();
    else this.literal();
  }

  /** Reads `true`, `false`, `null` or a number (and `NaN`, `Infinity`, `-Infinity` with `pythonLiterals`). */
  private literal(): boolean | null | number {
    const b = this.b;
    const c = this.peek();
    for (const [word, v] of this.pythonLiterals ? PYTHON_LITERALS : LITERALS) {
      if (c === word.charCodeAt(0) && (word[0] !== '-' || b[this.pos + 1] === 0x49)) {
        for (let k = 0; k < word.length; k++) if (b[this.pos + k] !== word.charCodeAt(k)) this.fail('syntax', `expected ${word}`);
        this.pos += word.length;
        return v;
      }
    }
    const text = this.numberToken();
    const v = Number(text);
    if (!Number.isFinite(v)) this.fail('limit', `number ${excerpt(text, 40)} is out of range`);
    return v;
  }

  /**
   * Reads any value into plain JS values (for documents without a fixed schema, like `model.json`). Every
   * value counts against `budget.values`, so the size of what is built is bounded too.
   */
  value(depth: number, budget: { values: number }): unknown {
    if (--budget.values < 0) this.fail('limit', 'more values than the limit');
    const c = this.peek();
    if (c === 0x7b) {
      const o: Record<string, unknown> = {};
      this.object(depth, (k) => {
        // defineProperty: a "__proto__" key must become a property, not the object's prototype.
        Object.defineProperty(o, k, { value: this.value(depth + 1, budget), enumerable: true, writable: true, configurable: true });
      });
      return o;
    }
    if (c === 0x5b) {
      const a: unknown[] = [];
      this.array(depth, () => { a.push(this.value(depth + 1, budget)); });
      return a;
    }
    if (c === 0x22) return this.string();
    return this.literal();
  }
}

/**
 * Parses a whole JSON document with bounded nesting and size of what is built; duplicate keys are errors.
 * `pythonLiterals` accepts the bare `NaN` / `Infinity` / `-Infinity` Python's json module writes.
 */
export function parseBoundedJson(bytes: Uint8Array, limits: { maxDepth: number; maxValues: number; pythonLiterals?: boolean }): unknown {
  const s = new JsonScanner(bytes, limits.maxDepth, limits.pythonLiterals);
  const v = s.value(1, { values: limits.maxValues });
  s.end();
  return v;
}
