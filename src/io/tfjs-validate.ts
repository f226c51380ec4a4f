/**
 * Validation of a TF.js weights folder as read: `model.json` (bounded parse, schema, sizes) and the rule
 * that a group's weights cover its shards' bytes exactly. tf.io offsets are implicit (the weights lie in
 * order in the concatenated shards), so exact coverage means: each weight's byte length follows from its
 * shape and storage, the lengths add up to the shards' total, and each shard has the size model.json
 * declares. Local files and fetched shards go through these same functions. No Node imports.
 */
import { JsonScanError, excerpt, parseBoundedJson, quoted } from './json-scanner.js';
import type { TfjsModelJson, TfjsWeightEntry, TgateMetadata } from './tfjs-manifest.js';

/** Largest `model.json` read (SDXL's UNet, 1,700 weights and its config, is about 300 KB). */
export const MAX_MODEL_JSON_BYTES = 64 * 1024 * 1024;
/** Weights in one model.json. */
export const MAX_WEIGHTS = 200_000;
/** Shard files of one group. */
export const MAX_SHARDS = 100_000;
/** Dimensions of one weight. */
export const MAX_RANK = 16;
/** Characters of a weight name or shard path. */
export const MAX_NAME_CHARS = 1024;
const MAX_DEPTH = 64;
const MAX_VALUES = 4_000_000;
const F32_MAX = 3.4028234663852886e38;

/** Byte layout of one weight group: each weight's offset and length in the concatenated shards. */
export interface GroupLayout {
  offsets: number[];
  lengths: number[];
  /** Bytes the weights need: the shards must hold exactly this many. */
  total: number;
  /** Shard sizes declared in model.json (`userDefinedMetadata.tgate.shardSizes`, group 0 only). */
  declared?: number[];
}

/** A value shown in a message: strings quoted and cut, anything else by kind. */
function show(v: unknown): string {
  if (typeof v === 'string') return quoted(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'a list' : 'an object';
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Parses and validates `model.json` (its bytes); `where` names it in every error. */
export function parseModelJson(bytes: Uint8Array, where: string): { json: TfjsModelJson; groups: GroupLayout[] } {
  const fail: (problem: string) => never = (problem) => { throw new Error(`${where}: ${problem}`); };
  let j: unknown;
  try {
    j = parseBoundedJson(bytes, { maxDepth: MAX_DEPTH, maxValues: MAX_VALUES });
  } catch (e) {
    if (!(e instanceof JsonScanError)) throw e;
    throw new Error(e.kind === 'syntax' ? `${where} is not valid JSON: ${e.message}` : `${where} rejected: ${e.message}`);
  }
  if (!isObject(j) || !Array.isArray(j.weightsManifest)) fail('no weightsManifest list: not a TF.js model folder');
  const m = j as unknown as TfjsModelJson;
  const names = new Set<string>();
  const groups = m.weightsManifest.map((g, gi) => {
    if (!isObject(g) || !Array.isArray(g.weights)) fail(`group ${gi} has no weights list`);
    if (!Array.isArray(g.paths) || g.paths.length > MAX_SHARDS || !g.paths.every((p) => typeof p === 'string' && p.length > 0 && p.length <= MAX_NAME_CHARS)) {
      fail(`group ${gi}: paths must be a list of file names (at most ${MAX_SHARDS}, each of 1 to ${MAX_NAME_CHARS} characters)`);
    }
    const layout: GroupLayout = { offsets: [], lengths: [], total: 0 };
    g.weights.forEach((w, wi) => {
      if (names.size >= MAX_WEIGHTS) fail(`more than ${MAX_WEIGHTS} weights`);
      const length = checkEntry(w, `weight ${wi} of group ${gi}`, fail);
      if (names.has(w.name)) fail(`weight ${quoted(w.name)} is listed twice`);
      names.add(w.name);
      layout.offsets.push(layout.total);
      layout.lengths.push(length);
      layout.total += length;
      if (!Number.isSafeInteger(layout.total)) fail(`the weights of group ${gi} need more bytes than a file can hold`);
    });
    return layout;
  });
  const declared = tgateShardSizes(m, fail);
  if (declared) {
    if (!groups.length) fail('userDefinedMetadata.tgate.shardSizes is given but there is no weight group');
    if (declared.length !== m.weightsManifest[0].paths.length) {
      fail(`userDefinedMetadata.tgate.shardSizes lists ${declared.length} sizes for the ${m.weightsManifest[0].paths.length} shards of group 0`);
    }
    const sum = declared.reduce((a, b) => a + b, 0);
    if (sum !== groups[0].total) fail(`shardSizes add up to ${sum} bytes but the weights of group 0 need ${groups[0].total}`);
    groups[0].declared = declared;
  }
  return { json: m, groups };
}

/** `userDefinedMetadata.tgate.shardSizes`, checked, when present. */
function tgateShardSizes(m: TfjsModelJson, fail: (p: string) => never): number[] | undefined {
  const u = (m as { userDefinedMetadata?: unknown }).userDefinedMetadata;
  if (u === undefined) return undefined;
  if (!isObject(u)) fail('userDefinedMetadata is not an object');
  const t = (u as { tgate?: unknown }).tgate;
  if (t === undefined) return undefined;
  if (!isObject(t)) fail('userDefinedMetadata.tgate is not an object');
  const s = (t as Partial<TgateMetadata>).shardSizes;
  if (s === undefined) return undefined;
  if (!Array.isArray(s) || !s.every(isCount)) fail('userDefinedMetadata.tgate.shardSizes must be a list of non-negative integers (one per shard of group 0)');
  return s;
}

/** Checks one manifest entry; returns its byte length in the group's stream. */
function checkEntry(w: TfjsWeightEntry, at: string, fail: (p: string) => never): number {
  if (!isObject(w)) fail(`${at} is not an object`);
  if (typeof w.name !== 'string') fail(`${at}: name is not a string (found ${show(w.name)})`);
  if (w.name.length > MAX_NAME_CHARS) fail(`${at}: name of ${w.name.length} characters is longer than the ${MAX_NAME_CHARS}-character limit`);
  const t = `weight ${quoted(w.name)}`;
  const shape: unknown = w.shape;
  if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every(isCount)) {
    fail(`${t}: shape must be a list of at most ${MAX_RANK} non-negative integers below 2^53 (found ${Array.isArray(shape) ? `[${excerpt(shape.map(show).join(','), 80)}]` : show(shape)})`);
  }
  if (w.dtype !== 'float32') fail(`${t}: dtype ${show(w.dtype)} is not supported: weights are float32, optionally stored quantized (float16, uint8)`);
  const elems = (shape as number[]).reduce((a, d) => a * d, 1);
  const bytes = elems * storedBytes(w, t, fail);
  if (!Number.isSafeInteger(bytes)) fail(`${t}: shape [${shape as number[]}] has more elements than a file can hold`);
  return bytes;
}

/** Bytes per stored element, checking the quantization record. */
function storedBytes(w: TfjsWeightEntry, t: string, fail: (p: string) => never): number {
  const q: unknown = w.quantization;
  if (q === undefined) return 4;
  if (!isObject(q)) fail(`${t}: quantization is not an object (found ${show(q)})`);
  const { dtype, min, scale } = q as { dtype?: unknown; min?: unknown; scale?: unknown };
  if (dtype === 'float16') return 2;
  if (dtype !== 'uint8') fail(`${t}: quantization dtype ${show(dtype)} is not supported (float16, uint8)`);
  // Decoding is q · scale + min for q in 0..255: every result must be a finite float32.
  const ok = typeof min === 'number' && typeof scale === 'number' && Number.isFinite(min) && Number.isFinite(scale) && scale >= 0
    && Math.abs(min) <= F32_MAX && Math.abs(min + 255 * scale) <= F32_MAX;
  if (!ok) fail(`${t}: quantization uint8 needs a finite min and a scale ≥ 0 with min + 255·scale within float32 (found min ${show(min)}, scale ${show(scale)})`);
  return 1;
}

/** A shard's actual size against the size model.json declares for it. */
export function checkShardSize(location: string, actual: number | string, declared: number | undefined): void {
  if (declared !== undefined && actual !== declared) throw new Error(`${location} has ${actual} bytes but model.json's shardSizes says ${declared}`);
}

/** The shards' sizes against what the group's weights need: exact, no missing and no trailing bytes. */
export function checkGroupBytes(where: string, group: number, need: number, sizes: number[]): void {
  const have = sizes.reduce((a, b) => a + b, 0);
  if (have === need) return;
  const why = have > need ? `${have - need} trailing bytes` : 'truncated shards, or wrong shapes in model.json';
  throw new Error(`${where}: the shards of group ${group} hold ${have} bytes but the weights need ${need} (${why})`);
}
