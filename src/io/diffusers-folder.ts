/**
 * The diffusers folder layout (Node): model_index.json, <component>/config.json, weight files with optional
 * variants (`diffusion_pytorch_model.fp16.safetensors`) and sharded checkpoints (`*.safetensors.index.json`).
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { openSafetensors } from './node-source.js';
import { SafetensorsWeightSource } from './safetensors-weight-source.js';
import { parseJson } from './json.js';

export type Config = Record<string, unknown> & { _class_name?: string };

export async function readJson<T = Config>(file: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseJson<T>(text, file);
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
      const idx = await readJson<{ weight_map?: unknown }>(path.join(dir, `${base}.index.json`));
      const map = idx?.weight_map;
      if (!map || typeof map !== 'object' || Array.isArray(map) || !Object.values(map).every((f) => typeof f === 'string' && f.length > 0)) {
        throw new Error(`${path.join(dir, `${base}.index.json`)}: weight_map must be an object of tensor name → file name`);
      }
      return [...new Set(Object.values(map as Record<string, string>))].map((f) => path.join(dir, f));
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
