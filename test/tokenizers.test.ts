/** Tokenizers against the ids transformers recorded in the goldens, plus cleanup/truncation/loader behaviour. */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openSafetensors } from '../src/io/node-source.js';
import { CLIPTokenizer, T5Tokenizer, clipBasicClean, loadTokenizer } from '../src/tokenizers/index.js';
import { FIXTURES, fixture } from './support/helpers.js';

const ROOT = path.resolve(FIXTURES, '..', '..');
const SHAPES_MODEL = path.join(ROOT, 'assets', 'tiny-shapes');
const SHAPES_RUNS = path.join(ROOT, 'test', 'fixtures', 'tiny-shapes');
const CLIP_PROMPTS = ['a photo of a cat', 'the red dog and a cat', ''];
const T5_PROMPTS = ['a photo of a cat', 'an astronaut riding a horse on mars'];

/** Rows of an int tensor of a safetensors file. */
async function rows(file: string, name: string): Promise<number[][]> {
  const f = await openSafetensors(file);
  const t = await f.tensor(name);
  const flat = Array.from(t.dataSync());
  const [n, len] = t.shape;
  t.dispose();
  await f.close();
  return Array.from({ length: n }, (_, i) => flat.slice(i * len, (i + 1) * len));
}

describe('CLIPTokenizer', () => {
  test.each([
    ['clip_tiny_sd15_forward', 'pipelines/sd15_tiny/tokenizer'],
    ['clip_tiny_sdxl_te1_forward', 'pipelines/sdxl_tiny/tokenizer'],
    ['clip_tiny_sdxl_te2_forward', 'pipelines/sdxl_tiny/tokenizer_2'],
  ])('%s input_ids', async (golden, dir) => {
    const tok = await CLIPTokenizer.fromDir(fixture(dir));
    const want = await rows(fixture('goldens', `${golden}.safetensors`), 'in.input_ids');
    const got = tok.call(CLIP_PROMPTS, { padding: 'max_length', maxLength: 77, truncation: true });
    expect(got.inputIds).toEqual(want);
    expect(got.truncated).toEqual([false, false, false]);
    // Mask covers bos..eos: "a photo of a cat" is bos + 5 + eos.
    expect(got.attentionMask[0].reduce((a, b) => a + b, 0)).toBe(7);
    expect(got.attentionMask[2].slice(0, 3)).toEqual([1, 1, 0]);
  });

  test('tiny-shapes prompts match reference_runs (json and safetensors)', async () => {
    const tok = await CLIPTokenizer.fromDir(path.join(SHAPES_MODEL, 'tokenizer'));
    const ref = JSON.parse(await readFile(path.join(SHAPES_RUNS, 'reference_runs.json'), 'utf8')) as
      { prompts: { index: number; prompt: string; input_ids: number[] }[] };
    const st = path.join(SHAPES_RUNS, 'reference_runs.safetensors');
    expect(ref.prompts.length).toBeGreaterThan(0);
    for (const p of ref.prompts) {
      const got = tok.call([p.prompt], { padding: 'max_length' }).inputIds[0];
      expect(got).toEqual(p.input_ids);
      expect(got).toEqual((await rows(st, `p${p.index}.input_ids`))[0]);
    }
    expect(tok.call([''], { padding: 'max_length' }).inputIds[0]).toEqual((await rows(st, 'empty.input_ids'))[0]);
  });

  test('lower-casing and whitespace cleanup', async () => {
    const tok = await CLIPTokenizer.fromDir(fixture('pipelines/sd15_tiny/tokenizer'));
    expect(clipBasicClean('  A\u00a0PHOTO\tof\n\n a  CAT \u0007')).toBe('a photo of a cat');
    expect(tok.encode('  A   PHOTO\tof\n a CAT  ')).toEqual(tok.encode('a photo of a cat'));
    expect(tok.encode('a photo of a cat')).toEqual([320, 515, 516, 320, 518]);
    expect(tok.decode(tok.encode('The red DOG'))).toBe('the red dog');
  });

  test('special tokens in the text map to their ids', async () => {
    const tok = await CLIPTokenizer.fromDir(fixture('pipelines/sd15_tiny/tokenizer'));
    expect(tok.encode('cat<|endoftext|>')).toEqual([518, 528]);
    // SDXL's second tokenizer registers its pad "!" as an added token, so it is matched verbatim (id 0).
    const tok2 = await CLIPTokenizer.fromDir(fixture('pipelines/sdxl_tiny/tokenizer_2'));
    expect(tok.encode('cat !')).toEqual([518, 256]);
    expect(tok2.encode('cat !')).toEqual([518, 0]);
  });

  test('a too-long prompt is truncated to 77 ids ending with eos, and reported', async () => {
    const tok = await CLIPTokenizer.fromDir(fixture('pipelines/sd15_tiny/tokenizer'));
    const long = Array.from({ length: 50 }, () => 'a red cat').join(' ');
    expect(tok.tokenCount(long)).toBe(152);
    const out = tok.call([long, 'a cat'], { padding: 'max_length' });
    expect(out.inputIds[0]).toHaveLength(77);
    expect(out.inputIds[0][0]).toBe(tok.bosTokenId);
    expect(out.inputIds[0][76]).toBe(tok.eosTokenId);
    expect(out.attentionMask[0].every((m) => m === 1)).toBe(true);
    expect(out.truncated).toEqual([true, false]);
    const rep = tok.checkTruncation(long);
    expect(rep.truncated).toBe(true);
    expect(rep.tokenCount).toBe(152);
    expect(rep.message).toMatch(/too long.*152 tokens > 77/);
    expect(rep.removedText).toBe(Array.from({ length: 25 }, () => 'a red cat').join(' '));
    expect(tok.checkTruncation('a cat')).toMatchObject({ truncated: false, message: '' });
    // Without truncation the row keeps every token (padding cannot shorten it).
    expect(tok.call([long], { padding: 'max_length', truncation: false }).inputIds[0]).toHaveLength(152);
    expect(tok.call(['a cat', 'a red cat'], { padding: 'none' }).inputIds.map((r) => r.length)).toEqual([4, 5]);
    expect(tok.call(['a cat', 'a red cat'], { padding: 'longest' }).inputIds[0]).toEqual([527, 320, 518, 528, 528]);
  });
});

describe('T5Tokenizer', () => {
  const dir = fixture('pipelines/pixart_tiny/tokenizer');

  test('t5_tiny_forward input_ids and attention_mask', async () => {
    const tok = await T5Tokenizer.fromDir(dir);
    const golden = fixture('goldens', 't5_tiny_forward.safetensors');
    const got = tok.call(T5_PROMPTS, { padding: 'max_length', maxLength: 12, truncation: true });
    expect(got.inputIds).toEqual(await rows(golden, 'in.input_ids'));
    expect(got.attentionMask).toEqual(await rows(golden, 'in.attention_mask'));
    expect(got.truncated).toEqual([false, true]);
    expect(tok.checkTruncation(T5_PROMPTS[1], 12).removedText).toBe('a horse on mars');
  });

  test('normalization, extra ids and unknown chars', async () => {
    const tok = await T5Tokenizer.fromDir(dir);
    expect(tok.vocabSize).toBe(52);
    expect(tok.normalize('  a   photo ')).toBe('\u2581a\u2581photo');
    // nmt_nfkc maps tabs/newlines to spaces before whitespace collapsing.
    expect(tok.normalize('a\t\nphoto')).toBe('\u2581a\u2581photo');
    expect(tok.normalize('')).toBe('');
    // nmt_nfkc folds full-width letters to ASCII.
    expect(tok.encode('\uff41 \uff50\uff48\uff4f\uff54\uff4f')).toEqual(tok.encode('a photo'));
    expect(tok.encode('a <extra_id_0> cat</s>')).toEqual([3, 51, 10, 1]);
    // 'w' and 'v' are not in the vocab: one merged unknown piece.
    expect(tok.encode('a wv cat')).toEqual([3, 27, 2, 10]);
    expect(tok.tokenCount('a cat')).toBe(3);
    const out = tok.call(['a cat'], { padding: 'max_length', maxLength: 5 });
    expect(out.inputIds[0]).toEqual([3, 10, 1, 0, 0]);
    expect(out.attentionMask[0]).toEqual([1, 1, 1, 0, 0]);
    expect(tok.modelMaxLength).toBe(120);
  });
});

describe('loadTokenizer', () => {
  let tmp = '';
  beforeAll(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'tok-')); });
  afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

  test('picks the class from tokenizer_config.json', async () => {
    expect(await loadTokenizer(fixture('pipelines/sd15_tiny/tokenizer'))).toBeInstanceOf(CLIPTokenizer);
    expect(await loadTokenizer(fixture('pipelines/pixart_tiny/tokenizer'))).toBeInstanceOf(T5Tokenizer);
  });

  test('falls back to the files present, accepts *Fast', async () => {
    const t5dir = path.join(tmp, 't5');
    await mkdir(t5dir);
    await copyFile(fixture('pipelines/pixart_tiny/tokenizer/spiece.model'), path.join(t5dir, 'spiece.model'));
    expect(await loadTokenizer(t5dir)).toBeInstanceOf(T5Tokenizer);
    await writeFile(path.join(t5dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'T5TokenizerFast' }));
    expect(await loadTokenizer(t5dir)).toBeInstanceOf(T5Tokenizer);
  });

  test('an unknown tokenizer_class is an error naming it and the file', async () => {
    await writeFile(path.join(tmp, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'LlamaTokenizer' }));
    await expect(loadTokenizer(tmp)).rejects.toThrow(/LlamaTokenizer/);
    await expect(loadTokenizer(tmp)).rejects.toThrow(/tokenizer_config\.json/);
  });
});
