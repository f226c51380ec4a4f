/**
 * Fuzzing the safetensors reader with seeded mutations of real fixture files: byte flips, truncations,
 * insertions, length-field rewrites and header JSON edits. Every variant must either load (and then every
 * tensor reads with the advertised element count) or fail with a SafetensorsError — never a crash, a hang,
 * a RangeError from a huge allocation, or a non-Error throw.
 */
import fs from 'node:fs';
import { fixture } from './support/helpers.js';
import { SafetensorsError, SafetensorsFile, encodeSafetensors, type SafetensorsDtype } from '../src/io/safetensors.js';

const VARIANTS = 10000;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A small file made from a real fixture: up to `maxTensors` of its tensors, each cut to its first
 * `maxElems` elements along a flattened shape (dtype and metadata kept), so mutations stay cheap.
 */
async function shrink(rel: string, maxTensors: number, maxElems: number): Promise<Uint8Array> {
  const f = await SafetensorsFile.fromBytes(new Uint8Array(fs.readFileSync(fixture(rel))), rel);
  const out: Record<string, { values: Float32Array | Int32Array | Uint8Array; shape: number[]; dtype: SafetensorsDtype }> = {};
  for (const k of f.keys().slice(0, maxTensors)) {
    const { values, shape } = await f.readValues(k);
    const n = Math.min(values.length, maxElems);
    const keepShape = n === values.length ? shape : [n];
    const dtype = f.info(k).dtype;
    out[k] = { values: values.slice(0, n), shape: keepShape, dtype: dtype === 'I64' || dtype === 'I32' ? dtype : 'F32' };
  }
  return encodeSafetensors(out, f.metadata);
}

type Rng = () => number;
const int = (r: Rng, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];

function headerOf(b: Uint8Array): { n: number; json: Record<string, unknown> } {
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return { n, json: JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n))) };
}

function withHeader(b: Uint8Array, n: number, json: unknown, fixLength: boolean): Uint8Array {
  const hb = new TextEncoder().encode(JSON.stringify(json));
  const data = b.subarray(8 + n);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(fixLength ? hb.length : n), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

const WEIRD_NUMBERS = [0, 1, -1, 2, 3, 7, 255, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, -0, 0.5, 1e6, 4e12, Number.MAX_SAFE_INTEGER];
const WEIRD_VALUES: unknown[] = [null, 'F32', '', [], {}, [1], [1, 2, 3], true, 'x'.repeat(5), -5, 1.5];
const DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'f32', 'constructor', '__proto__', 'valueOf'];

/** Edits one field of the header JSON. */
function editHeader(r: Rng, json: Record<string, unknown>): void {
  const names = Object.keys(json).filter((k) => k !== '__metadata__');
  const op = int(r, 10);
  if (!names.length || op === 9) {
    json[pick(r, ['x', '__metadata__', 'constructor', '__proto__'])] = pick(r, [...WEIRD_VALUES, { dtype: 'F32', shape: [1], data_offsets: [0, 4] }]);
    return;
  }
  const name = pick(r, names);
  const e = json[name] as { dtype: unknown; shape: unknown[]; data_offsets: unknown[] };
  if (e === null || typeof e !== 'object' || Array.isArray(e)) {
    json[name] = pick(r, WEIRD_VALUES);
    return;
  }
  switch (op) {
    case 0: e.dtype = pick(r, DTYPES); break;
    case 1: if (Array.isArray(e.shape) && e.shape.length) e.shape[int(r, e.shape.length)] = pick(r, WEIRD_NUMBERS); break;
    case 2: e.shape = pick(r, [[], [0], [1e6, 1e6], [2 ** 30, 2 ** 30, 2 ** 30], ...WEIRD_VALUES]) as unknown[]; break;
    case 3: if (Array.isArray(e.data_offsets)) e.data_offsets[int(r, 2)] = pick(r, WEIRD_NUMBERS); break;
    case 4: if (Array.isArray(e.data_offsets)) e.data_offsets = [e.data_offsets[1], e.data_offsets[0]]; break;
    case 5: { // shift a tensor onto a neighbour
      const other = json[pick(r, names)] as { data_offsets: unknown[] };
      e.data_offsets = other.data_offsets; break;
    }
    case 6: { const k = pick(r, ['dtype', 'shape', 'data_offsets']); delete (e as Record<string, unknown>)[k]; break; }
    case 7: (e as Record<string, unknown>)[pick(r, ['dtype', 'shape', 'data_offsets'])] = pick(r, WEIRD_VALUES); break;
    case 8: if (Array.isArray(e.data_offsets) && typeof e.data_offsets[1] === 'number') {
      const d = pick(r, [-8, -4, -2, -1, 1, 2, 4, 8]);
      e.data_offsets = [Math.max(0, (e.data_offsets[0] as number) + d), (e.data_offsets[1] as number) + d];
    } break;
  }
}

/** One seeded mutation (sometimes two stacked) of `base`. */
function mutate(r: Rng, base: Uint8Array): Uint8Array {
  let b: Uint8Array = base.slice();
  const rounds = r() < 0.2 ? 2 : 1;
  for (let round = 0; round < rounds; round++) {
    const { n } = b.length >= 8 ? (() => { try { return headerOf(b); } catch { return { n: -1 }; } })() : { n: -1 };
    const op = int(r, 9);
    if (op === 0) { // bit flips anywhere
      for (let i = 0, m = 1 + int(r, 4); i < m && b.length; i++) b[int(r, b.length)] ^= 1 << int(r, 8);
    } else if (op === 1 && n > 0) { // byte overwrite inside the header (JSON syntax damage)
      for (let i = 0, m = 1 + int(r, 3); i < m; i++) b[8 + int(r, n)] = pick(r, [0x22, 0x2c, 0x3a, 0x5b, 0x5d, 0x7b, 0x7d, 0x30 + int(r, 10), 0x2d, 0x00, 0xff, int(r, 256)]);
    } else if (op === 2) { // truncation
      b = b.slice(0, int(r, b.length + 1));
    } else if (op === 3) { // insertion of random bytes
      const at = int(r, b.length + 1);
      const ins = Uint8Array.from({ length: 1 + int(r, 16) }, () => int(r, 256));
      const nb = new Uint8Array(b.length + ins.length);
      nb.set(b.subarray(0, at)); nb.set(ins, at); nb.set(b.subarray(at), at + ins.length);
      b = nb;
    } else if (op === 4) { // deletion
      const at = int(r, b.length + 1);
      const len = 1 + int(r, 16);
      b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + len)]);
    } else if (op === 5 && b.length >= 8) { // length field rewrite
      const v = pick(r, [0n, 1n, 2n ** 40n, 2n ** 63n, 2n ** 64n - 1n, BigInt(b.length), BigInt(Math.max(0, n + pick(r, [-2, -1, 1, 2])))]);
      new DataView(b.buffer, b.byteOffset).setBigUint64(0, v, true);
    } else if (n > 0) { // header JSON edits
      let parsed: { n: number; json: Record<string, unknown> } | null = null;
      try { parsed = headerOf(b); } catch { parsed = null; }
      if (parsed && parsed.json && typeof parsed.json === 'object' && !Array.isArray(parsed.json)) {
        for (let i = 0, m = 1 + int(r, 2); i < m; i++) editHeader(r, parsed.json);
        b = withHeader(b, parsed.n, parsed.json, r() < 0.9);
      }
    }
  }
  return b;
}

/** Outcome of parsing and reading every tensor of one variant. */
async function attempt(bytes: Uint8Array): Promise<'loaded' | 'rejected'> {
  try {
    const f = await SafetensorsFile.fromBytes(bytes, 'fuzz.safetensors');
    for (const k of f.keys()) {
      const { values, shape } = await f.readValues(k);
      const want = shape.reduce((a, d) => a * d, 1);
      if (values.length !== want) throw new Error(`BUG: tensor "${k}" read ${values.length} values for shape [${shape}]`);
      if (values.length > bytes.length) throw new Error(`BUG: tensor "${k}" has more values than the file has bytes`);
    }
    return 'loaded';
  } catch (e) {
    if (!(e instanceof SafetensorsError)) {
      const what = e instanceof Error ? `${e.name}: ${e.message}` : `non-Error throw ${String(e)}`;
      throw new Error(`variant failed with something other than a SafetensorsError: ${what}`);
    }
    expect(e.message).toMatch(/^fuzz\.safetensors: ./);
    return 'rejected';
  }
}

describe('safetensors reader fuzz', () => {
  let bases: [string, Uint8Array][] = [];
  beforeAll(async () => {
    bases = [
      ['goldens/t5_tiny_forward.safetensors', new Uint8Array(fs.readFileSync(fixture('goldens/t5_tiny_forward.safetensors')))],
      ['schedulers/dpmpp2m_sd.safetensors (shrunk)', await shrink('schedulers/dpmpp2m_sd.safetensors', 6, 24)],
      ['pipelines/pixart_tiny/text_encoder/model.safetensors (shrunk)', await shrink('pipelines/pixart_tiny/text_encoder/model.safetensors', 8, 16)],
    ];
  });

  test('the unmutated bases load', async () => {
    for (const [, b] of bases) expect(await attempt(b)).toBe('loaded');
    expect(bases[0][1].length).toBeLessThan(8000);
  });

  test(`${VARIANTS} seeded mutations load or throw SafetensorsError`, async () => {
    const r = mulberry32(20240611);
    const counts = { loaded: 0, rejected: 0 };
    let slowest = 0;
    const start = Date.now();
    for (let i = 0; i < VARIANTS; i++) {
      const [name, base] = bases[i % bases.length];
      const v = mutate(r, base);
      const t0 = performance.now();
      let outcome: 'loaded' | 'rejected';
      try {
        outcome = await attempt(v);
      } catch (e) {
        throw new Error(`variant ${i} of ${name}: ${(e as Error).message}`);
      }
      slowest = Math.max(slowest, performance.now() - t0);
      counts[outcome]++;
    }
    // Both outcomes must be well represented, or the mutations are not exercising the reader.
    expect(counts.loaded).toBeGreaterThan(VARIANTS * 0.05);
    expect(counts.rejected).toBeGreaterThan(VARIANTS * 0.3);
    // No single variant may take long (a hang or a huge allocation would).
    expect(slowest).toBeLessThan(1000);
    expect(Date.now() - start).toBeLessThan(30000);
  });
});
