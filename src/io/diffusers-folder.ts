/**
 * The diffusers folder layout (Node): model_index.json, <component>/config.json, weight files with optional
 * variants (`diffusion_pytorch_model.fp16.safetensors`) and sharded checkpoints (`*.safetensors.index.json`).
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { openSafetensors } from './node-source.js';
import { SafetensorsWeightSource } from './safetensors-weight-source.js';
import { parseJson } from './json.js';
import { MAX_JSON_BYTES, joinLocation, readLocalFile } from './location.js';

export type Config = Record<string, unknown> & { _class_name?: string };

/** Reads and parses a local JSON file (at most 16 MiB, bounded nesting; Python-style JSON accepted). */
export async function readJson<T = Config>(file: string): Promise<T> {
  return parseJson<T>((await readLocalFile(file, MAX_JSON_BYTES, 'JSON file'))!, file);
}

export async function exists(p: string): Promise<boolean> {
  try { await stat(p); return true; } catch { return false; }
}

/** Reads `<dir>/config.json` (diffusers) — the component's class is its `_class_name` or `architectures[0]`. */
export async function readComponentConfig(dir: string): Promise<Config> {
  const file = path.join(dir, 'config.json');
  const cfg = await readJson<unknown>(file);
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) {
    throw new Error(`${file} holds ${cfg === null ? 'null' : Array.isArray(cfg) ? 'an array' : `a ${typeof cfg}`}, not a JSON object of settings`);
  }
  const c = cfg as Config;
  if (!c._class_name && Array.isArray(c.architectures)) c._class_name = String(c.architectures[0]);
  return c;
}

const WEIGHT_STEMS = ['diffusion_pytorch_model', 'model'];

/**
 * Finds a component's safetensors weights: `<stem>[.<variant>].safetensors`, or a sharded
 * `<stem>[.<variant>].safetensors.index.json`. Errors list what the folder holds instead.
 */
export async function findWeightFiles(dir: string, variant?: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => { throw new Error(`component folder ${dir} does not exist`); });
  for (const stem of WEIGHT_STEMS) {
    const base = variant ? `${stem}.${variant}.safetensors` : `${stem}.safetensors`;
    if (names.includes(base)) return [path.join(dir, base)];
    if (names.includes(`${base}.index.json`)) {
      const indexFile = path.join(dir, `${base}.index.json`);
      const idx = await readJson<{ weight_map?: unknown }>(indexFile);
      const map = idx?.weight_map;
      if (!map || typeof map !== 'object' || Array.isArray(map) || !Object.values(map).every((f) => typeof f === 'string' && f.length > 0)) {
        throw new Error(`${indexFile}: weight_map must be an object of tensor name → file name`);
      }
      // The shard files are names from the index: they must stay inside the component folder.
      return [...new Set(Object.values(map as Record<string, string>))].map((f) => joinLocation(dir, f, `${indexFile}: weight_map file`));
    }
  }
  const st = names.filter((n) => n.endsWith('.safetensors') || n.endsWith('.index.json'));
  if (!variant && st.length) {
    // Only a variant is present (e.g. fp16): use it rather than fail, as it is the only choice.
    const v = st.map((n) => /^(?:diffusion_pytorch_model|model)\.([^.]+)\.safetensors(?:\.index\.json)?$/.exec(n)?.[1]).find(Boolean);
    if (v) return findWeightFiles(dir, v);
  }
  const bins = names.filter((n) => n.endsWith('.bin') || n.endsWith('.ckpt'));
  throw new Error(`no ${variant ? `"${variant}" variant ` : ''}safetensors weights in ${dir} (files: ${names.join(', ') || 'none'})` +
    (bins.length ? '; PyTorch .bin/.ckpt files cannot be read: convert them to safetensors first' : ''));
}

/** Opens a component's weights as one WeightSource (close it after loading). */
export async function openComponentWeights(dir: string, variant?: string): Promise<SafetensorsWeightSource> {
  const files = await findWeightFiles(dir, variant);
  return new SafetensorsWeightSource(await Promise.all(files.map((f) => openSafetensors(f))));
}
