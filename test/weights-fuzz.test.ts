/**
 * Fuzzing the weight readers with seeded mutations of valid files (test/support/weights-fuzz-cases.ts): 10,500
 * safetensors files and 2,100 TF.js folders, the latter read both from disk and over an in-memory fetch.
 *
 * Criteria (issue 18): no malformed file accepted, and an accepted file gives exactly its control's tensors
 * (dtype, shape, decoded values bit for bit; a tensor may only be renamed, which loading then reports); every
 * error is the reader's own, names the file and stays short; no case over 5 s; memory growth under 512 MiB;
 * local and fetched TF.js folders get the same verdict; the controls load.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from './support/helpers.js';
import { SafetensorsError, SafetensorsFile, encodeSafetensors, type SafetensorsDtype } from '../src/io/safetensors.js';
import { TfjsWeightSource } from '../src/io/tfjs-format.js';
import { buildFolder, controlWeights, memoryFetch, writeFolder, type Folder } from './support/tfjs-folder.js';
import { SAFETENSORS_OPS, TFJS_OPS, describeSafetensors, int, mulberry32, pick, type Expect, type StControl } from './support/weights-fuzz-cases.js';

const ST_CASES = 10_500;
const TF_CASES = 2_100;
const CASE_MS = 5000;
const MAX_GROWTH_MIB = 512;
const MAX_MESSAGE = 600;

/** One tensor as read: what must match the control's. */
interface Snap { name: string; dtype: string; shape: number[]; bytes: Uint8Array }

const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const count = (shape: number[]): number => shape.reduce((a, d) => a * d, 1);

/** Compares tensors in file order; a renamed tensor counts as `renamed`, any other difference is returned. */
function difference(got: Snap[], want: Snap[], stats: { renamed: number }): string | null {
  if (got.length !== want.length) return `${got.length} tensors instead of ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    // An empty tensor holds no data: its dtype and the rest of its shape say nothing a load could get wrong.
    const empty = count(g.shape) === 0 && count(w.shape) === 0;
    if (!empty && g.dtype !== w.dtype) return `tensor "${w.name}": dtype ${g.dtype} instead of ${w.dtype}`;
    if (!empty && g.shape.join() !== w.shape.join()) return `tensor "${w.name}": shape [${g.shape}] instead of [${w.shape}]`;
    if (!equalBytes(g.bytes, w.bytes)) return `tensor "${w.name}": different values`;
    if (g.name !== w.name) stats.renamed++;
  }
  return null;
}

/** Peak memory over a run: RSS sampled after every case, and the process's own peak (maxRSS). */
class Meter {
  private readonly baseRss = process.memoryUsage().rss;
  private readonly baseMax = process.resourceUsage().maxRSS * 1024;
  private peak = this.baseRss;
  sample(): void { this.peak = Math.max(this.peak, process.memoryUsage().rss); }
  growthMiB(): { sampled: number; maxRss: number } {
    const mib = (b: number): number => Math.round(b / 2 ** 20);
    return { sampled: mib(this.peak - this.baseRss), maxRss: mib(process.resourceUsage().maxRSS * 1024 - this.baseMax) };
  }
}

/** Tally per operation, and the first few violations of the criteria. */
class Tally {
  readonly ops = new Map<string, { cases: number; rejected: number; accepted: number }>();
  readonly violations: string[] = [];
  violationCount = 0;
  /** Violations by kind, for the summary. */
  readonly kinds = new Map<string, number>();
  slowest = { ms: 0, what: '' };
  readonly stats = { renamed: 0 };
  note(op: string, rejected: boolean): void {
    const t = this.ops.get(op) ?? { cases: 0, rejected: 0, accepted: 0 };
    t.cases++;
    if (rejected) t.rejected++; else t.accepted++;
    this.ops.set(op, t);
  }
  violation(what: string, kind = 'other'): void {
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1);
    this.violationCount++;
    if (this.violations.length < 12) this.violations.push(what);
  }
  time(ms: number, what: string): void {
    if (ms > this.slowest.ms) this.slowest = { ms: Math.round(ms), what };
    if (ms > CASE_MS) this.violation(`${what}: took ${Math.round(ms)} ms`, 'slow');
  }
  table(): string {
    const kinds = [...this.kinds].map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
    return `  violations: ${kinds}\n` + [...this.ops].map(([op, t]) => `  ${op.padEnd(56)} ${String(t.cases).padStart(5)} cases, ${String(t.rejected).padStart(5)} rejected, ${String(t.accepted).padStart(4)} accepted`).join('\n');
  }
}

/** Checks one outcome against the case's expectation and the error criteria. */
function judge(t: Tally, what: string, expect: Expect, result: Snap[] | Error, want: Snap[], names: string[], ok: (e: Error) => boolean): void {
  if (result instanceof Error) {
    if (!ok(result)) t.violation(`${what}: not the reader's error: ${result.name}: ${result.message.slice(0, 200)}`, 'foreign error');
    else if (!names.every((n) => result.message.includes(n))) t.violation(`${what}: error does not name ${names.join(' / ')}: ${result.message.slice(0, 200)}`, 'error without the file');
    else if (result.message.length > MAX_MESSAGE) t.violation(`${what}: message of ${result.message.length} characters`, 'long message');
    if (expect === 'accept') t.violation(`${what}: an equivalent file was rejected: ${result.message.slice(0, 200)}`, 'equivalent rejected');
    return;
  }
  if (expect === 'reject') t.violation(`${what}: a malformed file was accepted`, 'malformed accepted');
  const renamedBefore = t.stats.renamed;
  const diff = difference(result, want, t.stats);
  if (diff) t.violation(`${what}: accepted with wrong data: ${diff}`, 'accepted with wrong data');
  if (expect === 'accept' && t.stats.renamed !== renamedBefore) t.violation(`${what}: an equivalent file came back with other names`, 'renamed');
}

// ---------------------------------------------------------------- safetensors

async function readSafetensors(bytes: Uint8Array, name: string): Promise<Snap[] | Error> {
  try {
    const f = await SafetensorsFile.fromBytes(bytes, name);
    const snaps: (Snap & { begin: number })[] = [];
    for (const k of f.keys()) {
      const info = f.info(k);
      const { values, shape } = await f.readValues(k);
      if (values.length !== count(shape)) return new Error(`BUG: ${values.length} values for shape [${shape}]`);
      snaps.push({ name: k, dtype: info.dtype, shape, bytes: bytesOf(values).slice(), begin: info.begin });
    }
    return snaps.sort((a, b) => a.begin - b.begin || a.bytes.length - b.bytes.length);
  } catch (e) {
    return e instanceof Error ? e : new Error(`non-Error throw: ${String(e)}`);
  }
}

/** A small file from a real fixture: some of its tensors, each cut to its first elements. */
async function shrunk(rel: string, maxTensors: number, maxElems: number): Promise<Uint8Array> {
  const f = await SafetensorsFile.fromBytes(new Uint8Array(fs.readFileSync(fixture(rel))), rel);
  const out: Record<string, { values: Float32Array | Int32Array | Uint8Array; shape: number[]; dtype: SafetensorsDtype }> = {};
  for (const k of f.keys().slice(0, maxTensors)) {
    const { values, shape } = await f.readValues(k);
    const n = Math.min(values.length, maxElems);
    const dtype = f.info(k).dtype;
    out[k] = { values: values.slice(0, n), shape: n === values.length ? shape : [n], dtype: dtype === 'I64' || dtype === 'I32' ? dtype : 'F32' };
  }
  return encodeSafetensors(out, f.metadata);
}

/** Every dtype we read, an empty tensor and a scalar, with metadata. */
function everyDtype(): Uint8Array {
  const raw = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) & 0xff);
  return encodeSafetensors({
    f32: { values: Float32Array.from([1.5, -2, 3.25, 0]), shape: [2, 2] },
    f16: { values: raw(6, 1), shape: [3], dtype: 'F16' },
    bf16: { values: raw(4, 2), shape: [2, 1], dtype: 'BF16' },
    f64: { values: new Uint8Array(new Float64Array([0.1, 7]).buffer), shape: [2], dtype: 'F64' },
    i64: { values: Int32Array.from([5, -6]), shape: [2], dtype: 'I64' },
    i16: { values: raw(4, 3), shape: [2], dtype: 'I16' },
    u8: { values: raw(5, 4), shape: [5], dtype: 'U8' },
    flag: { values: Uint8Array.from([1, 0, 1]), shape: [3], dtype: 'BOOL' },
    empty: { values: new Float32Array(0), shape: [0, 3] },
    scalar: { values: Float32Array.from([9]), shape: [] },
  }, { format: 'pt', note: 'fuzz control' });
}

// ---------------------------------------------------------------- TF.js

async function readTfjs(open: () => Promise<TfjsWeightSource>): Promise<Snap[] | Error> {
  let s: TfjsWeightSource | undefined;
  try {
    s = await open();
    const snaps: Snap[] = [];
    for (const k of s.keys()) snaps.push({ name: k, dtype: 'float32', shape: s.shape(k), bytes: bytesOf(await s.read(k)).slice() });
    return snaps;
  } catch (e) {
    return e instanceof Error ? e : new Error(`non-Error throw: ${String(e)}`);
  } finally {
    await s?.close().catch(() => undefined);
  }
}

const sameVerdict = (a: Snap[] | Error, b: Snap[] | Error): boolean =>
  (a instanceof Error) === (b instanceof Error) && (a instanceof Error || difference(a, b as Snap[], { renamed: 0 }) === null);

describe('fuzzing the weight readers', () => {
  let stControls: { name: string; control: StControl; snaps: Snap[] }[];
  let tfControls: { name: string; files: Folder; snaps: Snap[] }[];
  let work: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'weights-fuzz-'));
    const st: [string, Uint8Array][] = [
      ['goldens/t5_tiny_forward.safetensors', new Uint8Array(fs.readFileSync(fixture('goldens/t5_tiny_forward.safetensors')))],
      ['schedulers/dpmpp2m_sd.safetensors (shrunk)', await shrunk('schedulers/dpmpp2m_sd.safetensors', 6, 24)],
      ['pixart_tiny/text_encoder (shrunk)', await shrunk('pipelines/pixart_tiny/text_encoder/model.safetensors', 8, 16)],
      ['every dtype', everyDtype()],
    ];
    stControls = [];
    for (const [name, bytes] of st) stControls.push({ name, control: describeSafetensors(bytes), snaps: (await readSafetensors(bytes, name)) as Snap[] });
    tfControls = [];
    for (const shardBytes of [8, 16, 64, 4096]) {
      const files = await buildFolder(controlWeights(), shardBytes);
      tfControls.push({ name: `${shardBytes}-byte shards`, files, snaps: (await readTfjs(() => TfjsWeightSource.open('https://c.test/', { fetch: memoryFetch('https://c.test/', files) }))) as Snap[] });
    }
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test('the controls load, locally and over fetch alike', async () => {
    for (const c of stControls) {
      expect(Array.isArray(c.snaps)).toBe(true);
      expect(c.snaps.length).toBeGreaterThan(1);
    }
    expect(stControls[0].control.bytes.length).toBeLessThan(8000);
    for (const c of tfControls) {
      expect(Array.isArray(c.snaps)).toBe(true);
      const dir = path.join(work, 'control');
      writeFolder(dir, c.files);
      expect(sameVerdict(await readTfjs(() => TfjsWeightSource.open(dir)), c.snaps)).toBe(true);
      fs.rmSync(dir, { recursive: true });
    }
  });

  test(`${ST_CASES} malformed safetensors files`, async () => {
    const r = mulberry32(20250611);
    const ops = Object.keys(SAFETENSORS_OPS);
    const t = new Tally();
    const meter = new Meter();
    const start = performance.now();
    for (let i = 0; i < ST_CASES; i++) {
      const c = stControls[i % stControls.length];
      let op = pick(r, ops);
      let m = SAFETENSORS_OPS[op](r, c.control);
      while (!m) { op = pick(r, ops); m = SAFETENSORS_OPS[op](r, c.control); }
      const name = `case-${i}.safetensors`;
      const t0 = performance.now();
      const result = await readSafetensors(m.bytes, name);
      t.time(performance.now() - t0, `case ${i} (${op} of ${c.name})`);
      t.note(op, result instanceof Error);
      judge(t, `case ${i} (${op} of ${c.name})`, m.expect, result, c.snaps, [name], (e) => e instanceof SafetensorsError);
      if (i % 50 === 0) meter.sample();
    }
    meter.sample();
    const mem = meter.growthMiB();
    console.log(`safetensors fuzz: ${ST_CASES} cases in ${Math.round(performance.now() - start)} ms, slowest ${t.slowest.ms} ms (${t.slowest.what}), ` +
      `memory growth ${mem.sampled} MiB sampled / ${mem.maxRss} MiB peak, ${t.stats.renamed} accepted with a renamed tensor, ` +
      `${t.violationCount} violations\n${t.table()}${t.violations.length ? `\n${t.violations.join('\n')}` : ''}`);
    expect(t.violations).toEqual([]);
    expect(mem.sampled).toBeLessThan(MAX_GROWTH_MIB);
    expect(mem.maxRss).toBeLessThan(MAX_GROWTH_MIB);
    // Every operation ran often enough to mean something.
    for (const [, s] of t.ops) expect(s.cases).toBeGreaterThan(100);
  });

  test(`${TF_CASES} malformed TF.js folders, from disk and over fetch`, async () => {
    const r = mulberry32(20250612);
    const ops = Object.keys(TFJS_OPS);
    const t = new Tally();
    const meter = new Meter();
    const start = performance.now();
    for (let i = 0; i < TF_CASES; i++) {
      const c = tfControls[i % tfControls.length];
      const op = ops[int(r, ops.length)];
      const m = TFJS_OPS[op](r, c.files)!;
      const dir = path.join(work, `c${i}`);
      const base = `https://fuzz.test/c${i}/`;
      writeFolder(dir, m.files);
      const what = `case ${i} (${op} of ${c.name})`;
      const t0 = performance.now();
      const local = await readTfjs(() => TfjsWeightSource.open(dir));
      const remote = await readTfjs(() => TfjsWeightSource.open(base, { fetch: memoryFetch(base, m.files) }));
      t.time(performance.now() - t0, what);
      fs.rmSync(dir, { recursive: true, force: true });
      t.note(op, local instanceof Error);
      judge(t, `${what}, from disk`, m.expect, local, c.snaps, [dir], () => true);
      judge(t, `${what}, over fetch`, m.expect, remote, c.snaps, [base], () => true);
      if (!sameVerdict(local, remote)) t.violation(`${what}: disk and fetch disagree (${local instanceof Error ? 'rejected' : 'accepted'} from disk)`, 'disk and fetch disagree');
      if (i % 50 === 0) meter.sample();
    }
    meter.sample();
    const mem = meter.growthMiB();
    console.log(`TF.js fuzz: ${TF_CASES} cases (each from disk and over fetch) in ${Math.round(performance.now() - start)} ms, slowest ${t.slowest.ms} ms (${t.slowest.what}), ` +
      `memory growth ${mem.sampled} MiB sampled / ${mem.maxRss} MiB peak, ${t.violationCount} violations\n${t.table()}${t.violations.length ? `\n${t.violations.join('\n')}` : ''}`);
    expect(t.violations).toEqual([]);
    expect(mem.sampled).toBeLessThan(MAX_GROWTH_MIB);
    expect(mem.maxRss).toBeLessThan(MAX_GROWTH_MIB);
    for (const [, s] of t.ops) expect(s.cases).toBeGreaterThan(50);
  });
});
