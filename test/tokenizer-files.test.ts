/**
 * Malformed tokenizer files are errors naming the file (not a prompt silently tokenized to unknowns), and a
 * 100,000-character prompt of emoji or combining marks neither overflows the stack nor hangs; its truncation
 * warning quotes at most ~100 characters of what was cut.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from './support/helpers.js';
import { CLIPTokenizer, T5Tokenizer, loadTokenizer } from '../src/tokenizers/index.js';
import * as bpe from '../src/tokenizers/bpe.js';

let work: string;
let n = 0;
beforeAll(() => { work = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-files-')); });
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A copy of a fixture tokenizer folder with `files` replaced (string or bytes). */
function copyWith(src: string, files: Record<string, string | Uint8Array>): string {
  const dir = path.join(work, `t${n++}`);
  fs.cpSync(fixture(src), dir, { recursive: true });
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body);
  return dir;
}

const CLIP = 'pipelines/sd15_tiny/tokenizer';
const T5 = 'pipelines/pixart_tiny/tokenizer';
const vocab = (): Record<string, unknown> => JSON.parse(fs.readFileSync(fixture(CLIP, 'vocab.json'), 'utf8'));
const tokConfig = (dir: string): Record<string, unknown> => JSON.parse(fs.readFileSync(fixture(dir, 'tokenizer_config.json'), 'utf8'));

describe('CLIP tokenizer files', () => {
  test.each([
    ['a list', '[1, 2]', /vocab\.json: expected a JSON object of token → id, found \[1,2\]/],
    ['null', 'null', /vocab\.json: expected a JSON object of token → id, found null/],
    ['a negative id', JSON.stringify({ ...vocab(), a: -1 }), /vocab\.json: token "a" has id -1: ids must be integers/],
    ['a fractional id', JSON.stringify({ ...vocab(), a: 1.5 }), /vocab\.json: token "a" has id 1\.5/],
    ['an id as a string', JSON.stringify({ ...vocab(), a: '3' }), /vocab\.json: token "a" has id "3"/],
  ])('a vocab.json holding %s is an error naming it (was: accepted)', async (_name, body, problem) => {
    const dir = copyWith(CLIP, { 'vocab.json': body });
    await expect(loadTokenizer(dir)).rejects.toThrow(problem);
    await expect(loadTokenizer(dir)).rejects.toThrow(path.join(dir, 'vocab.json'));
  });

  test('added_tokens_decoder keys that are not integers are an error (was: id NaN)', async () => {
    const cfg = tokConfig(CLIP);
    const dir = copyWith(CLIP, { 'tokenizer_config.json': JSON.stringify({ ...cfg, added_tokens_decoder: { x: { content: '<x>' } } }) });
    await expect(loadTokenizer(dir)).rejects.toThrow(`${path.join(dir, 'tokenizer_config.json')}: added_tokens_decoder key "x" is not a token id`);
  });

  test('an added token without content is an error (was: skipped)', async () => {
    const cfg = tokConfig(CLIP);
    const dir = copyWith(CLIP, { 'tokenizer_config.json': JSON.stringify({ ...cfg, added_tokens_decoder: { 5: { lstrip: true } } }) });
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer_config\.json: added_tokens_decoder\["5"\]=\{"lstrip":true\} is not a token/);
  });

  test('a merges.txt line that does not parse is an error naming the line (was: skipped)', async () => {
    const merges = fs.readFileSync(fixture(CLIP, 'merges.txt'), 'utf8').split('\n');
    merges.splice(3, 0, 'a b c');
    const dir = copyWith(CLIP, { 'merges.txt': merges.join('\n') });
    await expect(loadTokenizer(dir)).rejects.toThrow(`${path.join(dir, 'merges.txt')}: line 4 "a b c" is not a merge`);
  });

  test('a tokenizer_config.json that is not an object is named', async () => {
    const dir = copyWith(CLIP, { 'tokenizer_config.json': '[]' });
    await expect(CLIPTokenizer.fromDir(dir)).rejects.toThrow(`${path.join(dir, 'tokenizer_config.json')}: expected a JSON object, found []`);
  });
});

describe('T5 tokenizer files', () => {
  const good = (): Uint8Array => fs.readFileSync(fixture(T5, 'spiece.model'));

  test.each([
    ['random bytes', () => Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 0xff), /spiece\.model: /],
    ['truncated', () => good().subarray(0, 1001), /spiece\.model: truncated/],
    ['empty', () => new Uint8Array(0), /spiece\.model: the model has no pieces/],
    ['a JSON file', () => new TextEncoder().encode('{"pieces": []}'), /spiece\.model: /],
  ])('a spiece.model that is %s is an error naming it', async (_name, bytes, problem) => {
    const dir = copyWith(T5, { 'spiece.model': bytes() });
    const e = await loadTokenizer(dir).then(() => null, (x: Error) => x);
    expect(e?.message).toMatch(problem);
    expect(e?.message).toContain(path.join(dir, 'spiece.model'));
  });

  test('added_tokens.json ids must be integers, extra_ids bounded (was: a loop of 1e9)', async () => {
    const a = copyWith(T5, { 'added_tokens.json': JSON.stringify({ '<x>': 'one' }) });
    await expect(loadTokenizer(a)).rejects.toThrow(`${path.join(a, 'added_tokens.json')}: token "<x>" has id "one"`);
    const b = copyWith(T5, { 'tokenizer_config.json': JSON.stringify({ ...tokConfig(T5), extra_ids: 1e9 }) });
    await expect(loadTokenizer(b)).rejects.toThrow(`${path.join(b, 'tokenizer_config.json')}: extra_ids=1000000000 is invalid`);
  });
});

describe('a 100,000-character prompt', () => {
  const prompts: [string, string][] = [
    ['emoji', '😀'.repeat(50_000)],
    ['combining marks', `a${'\u0301'.repeat(100_000)}`],
    ['emoji and marks between letters', 'e\u0301😀a'.repeat(25_000)],
  ];

  test.each(prompts)('of %s tokenizes without overflowing the stack (was: RangeError), warning with ≤ ~100 characters', async (_name, prompt) => {
    for (const tok of [await CLIPTokenizer.fromDir(fixture(CLIP)), await T5Tokenizer.fromDir(fixture(T5))]) {
      const t0 = Date.now();
      const ids = tok.encode(prompt);
      // SentencePiece folds a run of unknown characters into one id; CLIP's byte-level BPE never does.
      if (tok instanceof CLIPTokenizer) expect(ids.length).toBeGreaterThan(100_000);
      const r = tok.checkTruncation(prompt);
      expect(r.truncated).toBe(r.tokenCount > tok.modelMaxLength);
      if (r.truncated) {
        const quoted = /this part was truncated: "(.*)"$/s.exec(r.message)![1];
        expect(quoted.length).toBeLessThan(150);
        expect(r.message.length).toBeLessThan(300);
      }
      const batch = tok.call([prompt], { padding: 'max_length' });
      expect(batch.inputIds[0].length).toBe(tok.modelMaxLength);
      // A hang guard, not a benchmark: the old quadratic paths took minutes or overflowed.
      expect(Date.now() - t0).toBeLessThan(10_000);
    }
  }, 60_000);
});

describe('BPE merges', () => {
  /** transformers' slow CLIPTokenizer.bpe loop, as the reference. */
  function slowBpe(word: string[], rank: (a: string, b: string) => number | undefined): string[] {
    let w = word;
    while (w.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < w.length; i++) {
        const r = rank(w[i], w[i + 1]);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const [a, b] = [w[best], w[best + 1]];
      const next: string[] = [];
      for (let i = 0; i < w.length;) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { next.push(a + b); i += 2; } else next.push(w[i++]);
      }
      w = next;
    }
    return w;
  }

  test('bpeMerge gives the slow loop’s result on 2,000 random words and merge tables, unordered ones included', () => {
    let s = 12345;
    const rnd = (k: number): number => { s = (s * 1103515245 + 12345) >>> 0; return (s >>> 8) % k; };
    for (let trial = 0; trial < 2000; trial++) {
      const alphabet = 'abc'.slice(0, 1 + rnd(3));
      const word = Array.from({ length: 1 + rnd(40) }, () => alphabet[rnd(alphabet.length)]);
      // Merges over the alphabet and some of their concatenations, in a random order (ranks not monotonic).
      const syms = [...alphabet, ...Array.from({ length: 6 }, () => alphabet[rnd(alphabet.length)] + alphabet[rnd(alphabet.length)])];
      const table = new Map<string, number>();
      for (let k = 0; k < 12; k++) table.set(`${syms[rnd(syms.length)]} ${syms[rnd(syms.length)]}`, rnd(1000));
      const rank = (a: string, b: string): number | undefined => table.get(`${a} ${b}`);
      expect(bpe.bpeMerge(word, rank)).toEqual(slowBpe(word, rank));
    }
  });
});
