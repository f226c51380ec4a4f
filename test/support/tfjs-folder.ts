/**
 * Test helpers for the TF.js weights format: a converted folder built in memory with the writer's own parts
 * (ShardPacker, encodeStored, buildModelJson), served by an in-memory fetch or written to a temporary folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  ShardPacker, STORED_BYTES, TfjsWeightSource, buildModelJson, encodeStored, shardFileName, uint8Params,
  type QuantizeMode, type TfjsModelJson, type TfjsWeightEntry,
} from '../../src/io/tfjs-format.js';

/** A folder's files by name: `model.json` and the shards. */
export type Folder = Map<string, Uint8Array>;

export interface ControlWeight { name: string; shape: number[]; mode: QuantizeMode; values: Float32Array }

/** Deterministic weights of every storage mode, one of them empty, sizes chosen so tensors span shards. */
export function controlWeights(): ControlWeight[] {
  const w = (name: string, shape: number[], mode: QuantizeMode, seed: number): ControlWeight => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { name, shape, mode, values: Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) * (1 + seed)) };
  };
  return [w('conv.weight', [3, 5], 'none', 1), w('norm.bias', [7], 'float16', 2), w('proj.weight', [2, 9], 'uint8', 3), w('empty', [0, 3], 'none', 4), w('out.bias', [4], 'none', 5)];
}

/** Writes `weights` as `tgate convert` does (model.json + shards of `shardBytes`), in memory. */
export async function buildFolder(weights: ControlWeight[], shardBytes = 16): Promise<Folder> {
  const total = weights.reduce((a, w) => a + w.values.length * STORED_BYTES[w.mode], 0);
  const files: Folder = new Map();
  const paths: string[] = [];
  const packer = new ShardPacker(shardBytes, total, async (i, n, bytes) => {
    const name = shardFileName(i, n);
    paths.push(name);
    files.set(name, bytes.slice());
  });
  const entries: TfjsWeightEntry[] = [];
  for (const w of weights) {
    const bpe = STORED_BYTES[w.mode];
    const q = w.mode === 'uint8' ? uint8Params(w.values) : undefined;
    // Encode into an aligned scratch buffer, then hand the packer its pieces.
    const stored = new Uint8Array(w.values.length * bpe);
    encodeStored(w.values, stored, w.mode, q);
    await packer.append(stored.length, (dst, off) => dst.set(stored.subarray(off, off + dst.length)));
    const e: TfjsWeightEntry = { name: w.name, shape: w.shape, dtype: 'float32' };
    if (w.mode === 'float16') e.quantization = { dtype: 'float16' };
    if (q) e.quantization = { dtype: 'uint8', min: q.min, scale: q.scale };
    entries.push(e);
  }
  await packer.finish();
  const json = buildModelJson(entries, paths, {
    version: 1, layout: 'tgate-tfjs', className: 'Test', config: { a: 1 }, quantize: 'none', shardSizes: packer.shardSizes,
  });
  files.set('model.json', new TextEncoder().encode(JSON.stringify(json)));
  return files;
}

export const modelJsonOf = (f: Folder): TfjsModelJson => JSON.parse(new TextDecoder().decode(f.get('model.json')));

export function withModelJson(f: Folder, json: unknown): Folder {
  const out = new Map(f);
  out.set('model.json', new TextEncoder().encode(typeof json === 'string' ? json : JSON.stringify(json)));
  return out;
}

/** A fetch serving `files` under `base` (404 for anything else), counting requests. */
export function memoryFetch(base: string, files: Folder, log?: string[]): typeof fetch {
  return (async (url: string | URL) => {
    const u = String(url);
    log?.push(u);
    const b = u.startsWith(base) ? files.get(u.slice(base.length)) : undefined;
    return b ? new Response(b.slice() as Uint8Array<ArrayBuffer>) : new Response('not found', { status: 404 });
  }) as typeof fetch;
}

export function writeFolder(dir: string, files: Folder): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of files) fs.writeFileSync(path.join(dir, name), bytes);
}

/** Opens a folder with `open` and reads every weight; the error it fails with, or null when it loads. */
export async function loadError(open: () => Promise<TfjsWeightSource>): Promise<Error | null> {
  let s: TfjsWeightSource | undefined;
  try {
    s = await open();
    for (const k of s.keys()) await s.read(k);
    return null;
  } catch (e) {
    return e as Error;
  } finally {
    await s?.close();
  }
}
