/**
 * Seeded mutations of valid weight files for test/weights-fuzz.test.ts. Each case says what a correct reader
 * must do with it: `reject` (malformed by the format's rules), `accept` (an equivalent file: same tensors),
 * or `any` (random damage: rejecting is right, accepting is right only with exactly the control's tensors).
 *
 * Left out on purpose: changes no reader can detect because the result is a valid file, such as flipped
 * data bytes, swapped names of two tensors of one size, or a dtype of the same width.
 */
import type { Folder } from './tfjs-folder.js';

export type Rng = () => number;
export type Expect = 'reject' | 'accept' | 'any';

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const int = (r: Rng, n: number): number => Math.floor(r() * n);
export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];
const enc = new TextEncoder();
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

// ---------------------------------------------------------------- safetensors

interface StEntry { name: string; dtype: string; shape: number[]; offsets: [number, number] }

/** A valid file taken apart: its entries in header order, metadata and data section. */
export interface StControl { bytes: Uint8Array; n: number; entries: StEntry[]; metadata?: Record<string, string>; data: Uint8Array }

const SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export function describeSafetensors(bytes: Uint8Array): StControl {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const entries = Object.entries(h).filter(([k]) => k !== '__metadata__').map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape, offsets: e.data_offsets }));
  return { bytes, n, entries, metadata: h.__metadata__ as unknown as Record<string, string> | undefined, data: bytes.subarray(8 + n) };
}

type Item = [key: string, valueText: string];
const entryText = (e: StEntry, extra = ''): string =>
  `{"dtype":${JSON.stringify(e.dtype)},"shape":[${e.shape.join(',')}],"data_offsets":[${e.offsets.join(',')}]${extra}}`;

function itemsOf(c: StControl, entries = c.entries): Item[] {
  const items: Item[] = entries.map((e) => [JSON.stringify(e.name), entryText(e)]);
  if (c.metadata) items.unshift(['"__metadata__"', JSON.stringify(c.metadata)]);
  return items;
}

/** Header text from items (keys already JSON-quoted, so duplicates and odd keys are possible). */
const textOf = (items: Item[], sep = ''): string => `{${items.map(([k, v]) => `${k}:${sep}${v}`).join(`,${sep}`)}}`;

/** A file from header bytes and data: the length field says header + pad, minus `cut`. */
function assemble(header: Uint8Array | string, data: Uint8Array, pad = 0, cut = 0): Uint8Array {
  const hb = concat(typeof header === 'string' ? enc.encode(header) : header, new Uint8Array(pad).fill(0x20));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hb.length - cut), true);
  return concat(len, hb, data);
}

const byteLen = (e: StEntry): number => e.offsets[1] - e.offsets[0];
const elems = (e: StEntry): number => e.shape.reduce((a, d) => a * d, 1);
const byOffset = (c: StControl): StEntry[] => [...c.entries].sort((a, b) => a.offsets[0] - b.offsets[0] || a.offsets[1] - b.offsets[1]);
const clone = (c: StControl): StEntry[] => c.entries.map((e) => ({ ...e, shape: [...e.shape], offsets: [...e.offsets] as [number, number] }));
const setLength = (b: Uint8Array, v: bigint): Uint8Array => { const o = b.slice(); new DataView(o.buffer).setBigUint64(0, v, true); return o; };

/** Replaces the text of one entry's field in the header by `raw`. */
function withField(c: StControl, i: number, field: 'dtype' | 'shape' | 'data_offsets', raw: string | undefined): Uint8Array {
  const items = c.entries.map((e, k): Item => {
    if (k !== i) return [JSON.stringify(e.name), entryText(e)];
    const f: Record<string, string> = { dtype: JSON.stringify(e.dtype), shape: `[${e.shape}]`, data_offsets: `[${e.offsets}]` };
    if (raw === undefined) delete f[field]; else f[field] = raw;
    return [JSON.stringify(e.name), `{${Object.entries(f).map(([k, v]) => `"${k}":${v}`).join(',')}}`];
  });
  if (c.metadata) items.unshift(['"__metadata__"', JSON.stringify(c.metadata)]);
  return assemble(textOf(items), c.data);
}

type StOp = (r: Rng, c: StControl) => { bytes: Uint8Array; expect: Expect } | undefined;
const reject = (bytes: Uint8Array): { bytes: Uint8Array; expect: Expect } => ({ bytes, expect: 'reject' });

const DEEP = [63, 64, 100, 1000, 100_000];
const BAD_UTF8 = [[0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x98], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x28, 0xa1]];

/** Structural damage (each must be rejected), equivalent rewrites (each must load the same) and random damage. */
export const SAFETENSORS_OPS: Record<string, StOp> = {
  'header length ±1..8': (r, c) => reject(setLength(c.bytes, BigInt(c.n + pick(r, [-8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8])))),
  'header length cut into its padding': (r, c) => { const pad = 1 + int(r, 8); return reject(assemble(textOf(itemsOf(c)), c.data, pad, 1 + int(r, pad))); },
  'header length huge or past the end': (r, c) => reject(setLength(c.bytes, pick(r, [2n ** 64n - 1n, 2n ** 63n, 100_000_001n, BigInt(c.bytes.length), BigInt(c.bytes.length - 7)]))),
  'spaces added to the header, length not updated': (r, c) =>
    reject(setLength(assemble(c.bytes.subarray(8, 8 + c.n), c.data, 1 + int(r, 8)), BigInt(c.n))),
  'data truncated': (r, c) => reject(c.bytes.subarray(0, 8 + c.n + int(r, c.data.length))),
  'bytes after the data': (r, c) => reject(concat(c.bytes, Uint8Array.from({ length: 1 + int(r, 16) }, () => int(r, 256)))),
  'offsets of two tensors of different sizes swapped': (r, c) => {
    const es = clone(c);
    const pairs: [number, number][] = [];
    for (let i = 0; i < es.length; i++) for (let j = i + 1; j < es.length; j++) if (byteLen(es[i]) !== byteLen(es[j])) pairs.push([i, j]);
    if (!pairs.length) return undefined;
    const [i, j] = pick(r, pairs);
    [es[i].offsets, es[j].offsets] = [es[j].offsets, es[i].offsets];
    return reject(assemble(textOf(itemsOf(c, es)), c.data));
  },
  'a gap before a tensor (data grown to match)': (r, c) => {
    const k = pick(r, byOffset(c));
    const d = 1 + int(r, 16);
    const b = k.offsets[0];
    const es = clone(c).map((e) => (e.offsets[0] >= b ? { ...e, offsets: [e.offsets[0] + d, e.offsets[1] + d] as [number, number] } : e));
    return reject(assemble(textOf(itemsOf(c, es)), concat(c.data.subarray(0, b), new Uint8Array(d), c.data.subarray(b))));
  },
  'a tensor overlapping the previous one (data shrunk to match)': (r, c) => {
    const sorted = byOffset(c);
    const ks = sorted.map((e, i) => i).filter((i) => i > 0 && byteLen(sorted[i - 1]) > 0 && sorted[i].offsets[0] === sorted[i - 1].offsets[1]);
    if (!ks.length) return undefined;
    const k = sorted[pick(r, ks)];
    const d = 1 + int(r, Math.min(16, byteLen(sorted[sorted.indexOf(k) - 1])));
    const b = k.offsets[0];
    const es = clone(c).map((e) => (e.offsets[0] >= b ? { ...e, offsets: [e.offsets[0] - d, e.offsets[1] - d] as [number, number] } : e));
    return reject(assemble(textOf(itemsOf(c, es)), concat(c.data.subarray(0, b - d), c.data.subarray(b))));
  },
  'a duplicate tensor name': (r, c) => {
    const items = itemsOf(c);
    const e = pick(r, c.entries);
    items.splice(int(r, items.length + 1), 0, [JSON.stringify(e.name), entryText(pick(r, [e, pick(r, c.entries)]))]);
    return reject(assemble(textOf(items), c.data));
  },
  'dtype of another width': (r, c) => {
    const i = int(r, c.entries.length);
    const e = c.entries[i];
    const dt = pick(r, Object.keys(SIZE).filter((d) => SIZE[d] !== SIZE[e.dtype]));
    return { bytes: withField(c, i, 'dtype', JSON.stringify(dt)), expect: elems(e) ? 'reject' : 'any' };
  },
  'unknown dtype': (r, c) => reject(withField(c, int(r, c.entries.length), 'dtype', JSON.stringify(pick(r, ['F8_E4M3', 'U16', 'f32', '', 'constructor', '__proto__', 'toString', 'F32 '])))),
  'huge dimension': (r, c) => {
    const i = int(r, c.entries.length);
    const e = c.entries[i];
    const dims = e.shape.map(String);
    const huge = pick(r, ['4294967296', '9007199254740991', '9007199254740992', '18446744073709551616', '1e300', '2147483648', '99999999999999999999999']);
    if (dims.length && r() < 0.7) dims[int(r, dims.length)] = huge; else dims.push(huge);
    return { bytes: withField(c, i, 'shape', `[${dims}]`), expect: elems(e) ? 'reject' : 'any' };
  },
  'integer written as a float or negative': (r, c) => {
    const i = int(r, c.entries.length);
    const e = c.entries[i];
    const f = (v: number): string => pick(r, [`${v}.0`, `${v}e0`, `${v}E+0`, `-${v}`, `${v}.5`]);
    if (r() < 0.5 && e.shape.length) {
      const dims = e.shape.map(String);
      const j = int(r, dims.length);
      dims[j] = f(e.shape[j]);
      return reject(withField(c, i, 'shape', `[${dims}]`));
    }
    const off = e.offsets.map(String);
    const j = int(r, 2);
    off[j] = f(e.offsets[j]);
    // "-0" is the one rewrite that some readers take as 0; we refuse it like any sign.
    return reject(withField(c, i, 'data_offsets', `[${off}]`));
  },
  'field of the wrong type': (r, c) => {
    const i = int(r, c.entries.length);
    if (r() < 0.5) return reject(withField(c, i, 'shape', pick(r, ['"2"', '{}', 'null', '3', 'true', '[[1]]', '["1"]'])));
    return reject(withField(c, i, 'data_offsets', pick(r, ['[0]', '[0,4,8]', '"0,4"', 'null', '{}', '[[0],[4]]', '[]'])));
  },
  'missing field': (r, c) => reject(withField(c, int(r, c.entries.length), pick(r, ['dtype', 'shape', 'data_offsets'] as const), undefined)),
  'deep nesting': (r, c) => {
    const depth = pick(r, DEEP);
    const closed = r() < 0.5;
    const v = '['.repeat(depth) + (closed ? ']'.repeat(depth) : '');
    const es = c.entries;
    const i = int(r, es.length);
    const items: Item[] = es.map((e, k) => [JSON.stringify(e.name), k === i ? entryText(e, `,"x":${v}`) : entryText(e)]);
    return reject(assemble(textOf(items), c.data));
  },
  'invalid UTF-8 in a name or the padding': (r, c) => {
    const bad = Uint8Array.from(pick(r, BAD_UTF8));
    const text = enc.encode(textOf(itemsOf(c)));
    if (r() < 0.3) return reject(assemble(concat(text, new Uint8Array([0x20]), bad), c.data));
    const e = pick(r, c.entries);
    const at = text.indexOf(0x22, findBytes(text, enc.encode(JSON.stringify(e.name)))) + 1 + int(r, e.name.length + 1);
    return reject(assemble(concat(text.subarray(0, at), bad, text.subarray(at)), c.data));
  },
  '__metadata__ of the wrong type': (r, c) => {
    const v = pick(r, ['[]', '5', 'null', '"pt"', '{"format":1}', '{"format":null}', '{"format":{}}', '{"format":["pt"]}', '{"format":true}']);
    return reject(assemble(textOf([['"__metadata__"', v], ...itemsOf(c).filter(([k]) => k !== '"__metadata__"')]), c.data));
  },
  'header syntax': (r, c) => {
    const t = textOf(itemsOf(c));
    const v = pick(r, [` ${t}`, `\ufeff${t}`, `${t.slice(0, -1)},}`, t.slice(0, -1), `${t}x`, `${t}}`, `${t}\u0000`, t.replace(':', ''), t.replace('{', '[')]);
    return reject(assemble(v, c.data));
  },
  'name longer than the limit': (r, c) => {
    const es = clone(c);
    es[int(r, es.length)].name = 'n'.repeat(1025 + int(r, 4000));
    return reject(assemble(textOf(itemsOf(c, es)), c.data));
  },
  // Equivalent rewrites: the same tensors must come back.
  'keys reordered, whitespace, padding': (r, c) => {
    const items = itemsOf(c);
    for (let i = items.length - 1; i > 0; i--) { const j = int(r, i + 1); [items[i], items[j]] = [items[j], items[i]]; }
    return { bytes: assemble(textOf(items, pick(r, ['', ' ', '\n', '\t ', '\r\n'])), c.data, int(r, 24)), expect: 'accept' };
  },
  'names written with \\u escapes': (r, c) => {
    const esc = (s: string): string => `"${[...s].map((ch) => (r() < 0.3 && ch.charCodeAt(0) < 0x7f ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : JSON.stringify(ch).slice(1, -1))).join('')}"`;
    const items = itemsOf(c).map(([k, v]): Item => [k === '"__metadata__"' ? k : esc(JSON.parse(k) as string), v]);
    return { bytes: assemble(textOf(items), c.data), expect: 'accept' };
  },
  'unknown fields, shallow': (r, c) => {
    const depth = 1 + int(r, 60);
    const v = pick(r, ['[1,2]', '{"a":"b"}', '"x"', 'null', '1.5e3', '['.repeat(depth) + ']'.repeat(depth)]);
    const i = int(r, c.entries.length);
    const items: Item[] = c.entries.map((e, k) => [JSON.stringify(e.name), k === i ? entryText(e, `,"extra":${v}`) : entryText(e)]);
    if (c.metadata) items.unshift(['"__metadata__"', JSON.stringify(c.metadata)]);
    return { bytes: assemble(textOf(items), c.data), expect: 'accept' };
  },
  // Random damage.
  'bit flips in the header': (r, c) => {
    const b = c.bytes.slice();
    for (let i = 0, m = 1 + int(r, 2); i < m; i++) b[8 + int(r, c.n)] ^= 1 << int(r, 8);
    return { bytes: b, expect: 'any' };
  },
  'JSON punctuation written into the header': (r, c) => {
    const b = c.bytes.slice();
    for (let i = 0, m = 1 + int(r, 3); i < m; i++) b[8 + int(r, c.n)] = pick(r, [0x22, 0x2c, 0x3a, 0x5b, 0x5d, 0x7b, 0x7d, 0x30 + int(r, 10), 0x2d, 0x00, 0xff, 0x5c, int(r, 256)]);
    return { bytes: b, expect: 'any' };
  },
  'bytes inserted or deleted anywhere': (r, c) => {
    const at = int(r, c.bytes.length + 1);
    if (r() < 0.5) return { bytes: concat(c.bytes.subarray(0, at), Uint8Array.from({ length: 1 + int(r, 16) }, () => int(r, 256)), c.bytes.subarray(at)), expect: 'any' };
    return { bytes: concat(c.bytes.subarray(0, at), c.bytes.subarray(at + 1 + int(r, 16))), expect: 'any' };
  },
  'truncated anywhere': (r, c) => ({ bytes: c.bytes.subarray(0, int(r, c.bytes.length)), expect: 'any' }),
};

function findBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let k = 0; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

// ---------------------------------------------------------------- TF.js

type Json = Record<string, unknown> & {
  weightsManifest: { paths: string[]; weights: Record<string, unknown>[] }[];
  userDefinedMetadata: { tgate: Record<string, unknown> & { shardSizes?: unknown } };
};
type TfOp = (r: Rng, f: Folder) => { files: Folder; expect: Expect } | undefined;

const jsonOf = (f: Folder): Json => JSON.parse(new TextDecoder().decode(f.get('model.json')));
const withJson = (f: Folder, j: unknown): Folder => new Map(f).set('model.json', enc.encode(typeof j === 'string' ? j : JSON.stringify(j)));
const shardsOf = (f: Folder): string[] => jsonOf(f).weightsManifest[0].paths;
const weightsOf = (j: Json): Record<string, unknown>[] => j.weightsManifest[0].weights;
const nonEmpty = (j: Json): number[] => weightsOf(j).map((w, i) => ((w.shape as number[]).reduce((a, d) => a * d, 1) > 0 ? i : -1)).filter((i) => i >= 0);
const rejectF = (files: Folder): { files: Folder; expect: Expect } => ({ files, expect: 'reject' });
function editJson(f: Folder, change: (j: Json) => void): Folder {
  const j = jsonOf(f);
  change(j);
  return withJson(f, j);
}
function editShard(r: Rng, f: Folder, change: (b: Uint8Array) => Uint8Array): Folder {
  const name = pick(r, shardsOf(f));
  return new Map(f).set(name, change(f.get(name)!));
}
const grow = (r: Rng) => (b: Uint8Array): Uint8Array => concat(b, Uint8Array.from({ length: 1 + int(r, 8) }, () => int(r, 256)));
const shrink = (r: Rng) => (b: Uint8Array): Uint8Array => b.subarray(0, int(r, b.length));
const noSizes = (j: Json): void => { delete j.userDefinedMetadata.tgate.shardSizes; };

export const TFJS_OPS: Record<string, TfOp> = {
  'a shard with extra bytes': (r, f) => rejectF(editShard(r, f, grow(r))),
  'a truncated shard': (r, f) => rejectF(editShard(r, f, shrink(r))),
  'no shardSizes and a shard with extra bytes': (r, f) => rejectF(editShard(r, editJson(f, noSizes), grow(r))),
  'no shardSizes and a truncated shard': (r, f) => rejectF(editShard(r, editJson(f, noSizes), shrink(r))),
  'wrong shardSizes': (r, f) => rejectF(editJson(f, (j) => {
    const s = j.userDefinedMetadata.tgate.shardSizes as number[];
    const i = int(r, s.length);
    const d = 1 + int(r, 8);
    const kind = int(r, 5);
    if (kind === 0) s[i] += pick(r, [d, -Math.min(d, s[i]) || d]);
    else if (kind === 1 && s.length > 1) { const k = (i + 1) % s.length; const m = Math.min(d, s[k]) || 0; if (m) { s[i] += m; s[k] -= m; } else s[i] += d; }
    else if (kind === 2) s.splice(i, 1);
    else if (kind === 3) s.push(pick(r, [0, 4, s[i]]));
    else j.userDefinedMetadata.tgate.shardSizes = pick(r, ['16', null, {}, [1.5], [-4], s.map(String)]);
  })),
  'a duplicate weight name': (r, f) => rejectF(editJson(f, (j) => {
    const w = weightsOf(j);
    const i = int(r, w.length);
    let k = int(r, w.length - 1);
    if (k >= i) k++;
    w[k].name = w[i].name;
  })),
  'a shape with another element count': (r, f) => {
    const j = jsonOf(f);
    const ks = nonEmpty(j);
    const w = weightsOf(j)[pick(r, ks)];
    const shape = [...(w.shape as number[])];
    const d = int(r, shape.length);
    shape[d] = Math.max(0, shape[d] + pick(r, [-1, 1, 2]));
    if (shape.reduce((a, x) => a * x, 1) === (w.shape as number[]).reduce((a, x) => a * x, 1)) shape.push(2);
    w.shape = shape;
    return rejectF(withJson(f, j));
  },
  'a bad shape': (r, f) => rejectF(editJson(f, (j) => {
    const w = weightsOf(j)[pick(r, nonEmpty(j))];
    w.shape = pick(r, [[-1, 3], [1.5], ['3'], 3, null, [2 ** 53], [1e300], new Array(40).fill(1), [2 ** 40, 2 ** 40], {}]);
  })),
  'a dtype other than float32': (r, f) => rejectF(editJson(f, (j) => {
    weightsOf(j)[int(r, weightsOf(j).length)].dtype = pick(r, ['int32', 'float16', 'bool', 'float64', 1, null, 'FLOAT32']);
  })),
  'bad quantization': (r, f) => rejectF(editJson(f, (j) => {
    const ws = weightsOf(j);
    const q = ws.findIndex((w) => (w.quantization as { dtype?: string } | undefined)?.dtype === 'uint8');
    const f16 = ws.findIndex((w) => (w.quantization as { dtype?: string } | undefined)?.dtype === 'float16');
    const plain = nonEmpty(j).filter((i) => !ws[i].quantization);
    const kind = int(r, 6);
    if (kind === 0) ws[q].quantization = { ...(ws[q].quantization as object), scale: pick(r, ['x', null, -1, 1e39]) };
    else if (kind === 1) { const qq = { ...(ws[q].quantization as Record<string, unknown>) }; delete qq[pick(r, ['min', 'scale'])]; ws[q].quantization = qq; }
    else if (kind === 2) ws[pick(r, [q, f16])].quantization = { dtype: pick(r, ['uint16', 'int8', 'float32', 7, null]) };
    else if (kind === 3) ws[pick(r, [q, f16])].quantization = pick(r, ['uint8', 5, [], null]);
    else if (kind === 4) delete ws[pick(r, [q, f16])].quantization;
    else ws[pick(r, plain)].quantization = { dtype: 'float16' };
  })),
  'deep nesting in model.json': (r, f) => {
    const depth = pick(r, DEEP.slice(1));
    const v = '['.repeat(depth) + (r() < 0.5 ? ']'.repeat(depth) : '');
    const text = new TextDecoder().decode(f.get('model.json'));
    return rejectF(withJson(f, `{"deep":${v},${text.slice(1)}`));
  },
  'invalid UTF-8 in model.json': (r, f) => {
    const text = f.get('model.json')!;
    const at = findBytes(text, enc.encode('"name":"')) + 8;
    return rejectF(new Map(f).set('model.json', concat(text.subarray(0, at), Uint8Array.from(pick(r, BAD_UTF8)), text.subarray(at))));
  },
  'model.json syntax': (r, f) => {
    const t = new TextDecoder().decode(f.get('model.json'));
    return rejectF(withJson(f, pick(r, [t.slice(0, int(r, t.length)), `${t}x`, `${t}}`, t.replace(':', ''), '', 'null', '[]', '{"weightsManifest":{}}', `${t.slice(0, -1)},}`])));
  },
  'a duplicate key in model.json': (r, f) => {
    const t = new TextDecoder().decode(f.get('model.json'));
    const key = pick(r, ['"shape":[1],', '"dtype":"float32",', '"name":"x",']);
    return rejectF(withJson(f, r() < 0.3 ? `{"weightsManifest":[],${t.slice(1)}` : t.replace(/"name":("[^"]*"),/, (m) => `${m}${key}`)));
  },
  'a missing shard or path': (r, f) => {
    if (r() < 0.5) { const out = new Map(f); out.delete(pick(r, shardsOf(f))); return rejectF(out); }
    return rejectF(editJson(f, (j) => { j.weightsManifest[0].paths.splice(int(r, j.weightsManifest[0].paths.length), 1); noSizes(j); }));
  },
  'weightsManifest of the wrong shape': (r, f) => rejectF(editJson(f, (j) => {
    const g = j.weightsManifest[0] as Record<string, unknown>;
    const kind = int(r, 4);
    if (kind === 0) g.paths = pick(r, [[1, 2], 'x', null, ['']]);
    else if (kind === 1) g.weights = pick(r, [{}, 'x', null]);
    else if (kind === 2) (weightsOf(j) as unknown[])[int(r, weightsOf(j).length)] = pick(r, [null, 'w', 5, []]);
    else weightsOf(j)[int(r, weightsOf(j).length)].name = pick(r, [5, null, 'n'.repeat(2000)]);
  })),
  // Equivalent rewrites.
  'no shardSizes (sizes from the shards)': (_r, f) => ({ files: editJson(f, noSizes), expect: 'accept' }),
  'model.json re-indented, with unknown fields': (r, f) => {
    const j = jsonOf(f);
    (j as Record<string, unknown>).extra = { note: 'x', depth: JSON.parse('['.repeat(20) + ']'.repeat(20)) };
    weightsOf(j)[int(r, weightsOf(j).length)].group = 'unused';
    return { files: withJson(f, JSON.stringify(j, null, pick(r, [1, 2, '\t']))), expect: 'accept' };
  },
};
