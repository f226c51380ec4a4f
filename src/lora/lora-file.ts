/**
 * A LoRA safetensors file as the two formats people download spell it, read into one list of adapted modules
 * (which tensor is `down`, which is `up`, which alpha applies). Nothing here knows a model: module paths are
 * resolved against the real modules in ./targets.ts.
 *
 * - diffusers / PEFT: `<component>.<module path>.lora_A.weight` (down, [r, in]) and `.lora_B.weight` (up,
 *   [out, r]); the older diffusers spellings `.lora.down.weight` / `.lora_linear_layer.down.weight` and the
 *   attention-processor form `<attn>.processor.to_q_lora.down.weight` are read too. A PEFT adapter saved at
 *   model level (`base_model.model.<path>`) has no component prefix.
 * - kohya (sd-scripts): `lora_unet_<module path with "_" for ".">.lora_down.weight` / `.lora_up.weight` /
 *   `.alpha`, text encoders `lora_te_` (SDXL: `lora_te1_`, `lora_te2_`).
 *
 * Alpha (the delta is scale · alpha / rank · up · down): a module's own `.alpha` tensor (kohya; some converted
 * diffusers files); otherwise the file's metadata — diffusers' `lora_adapter_metadata` JSON
 * (`<component>.lora_alpha`, `<component>.alpha_pattern`) or a plain `lora_alpha` entry (PEFT's name);
 * otherwise the caller's `alpha`; otherwise alpha = rank, which is what diffusers v0.30.3 does with a PEFT file.
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import { parseJson } from '../io/json.js';

/** A LoRA file that does not fit: every problem found, in one error. */
export class LoraError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    const shown = problems.length > 40 ? [...problems.slice(0, 40), `… and ${problems.length - 40} more`] : problems;
    super(`${source}: the LoRA does not fit the model (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${shown.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'LoraError';
  }
}

export type LoraFormat = 'peft' | 'kohya';

/** One adapted module as the file names it. */
export interface LoraModuleEntry {
  /** Component prefix (`unet`, `text_encoder`, …), or null for a model-level PEFT file. */
  component: string | null;
  /** Dotted module path (PEFT), or the kohya name with "_" for "." (resolved against the model later). */
  module: string;
  format: LoraFormat;
  down?: string;
  up?: string;
  /** Key of the module's own alpha tensor. */
  alpha?: string;
}

/** kohya prefixes and the components they name; longest first, so `lora_te1_` is not read as `lora_te_`. */
export const KOHYA_PREFIXES: readonly (readonly [string, string])[] = [
  ['lora_unet_', 'unet'], ['lora_te1_', 'text_encoder'], ['lora_te2_', 'text_encoder_2'], ['lora_te_', 'text_encoder'],
  ['lora_transformer_', 'transformer'],
];

const PEFT_ROLES: readonly (readonly [string, 'down' | 'up' | 'alpha'])[] = [
  ['.lora_A.weight', 'down'], ['.lora_B.weight', 'up'], ['.lora.down.weight', 'down'], ['.lora.up.weight', 'up'],
  ['.lora_linear_layer.down.weight', 'down'], ['.lora_linear_layer.up.weight', 'up'], ['.alpha', 'alpha'],
];
const KOHYA_ROLES: Record<string, 'down' | 'up' | 'alpha'> = { 'lora_down.weight': 'down', 'lora_up.weight': 'up', alpha: 'alpha' };
/** Tensors of LoRA variants this implementation does not compute (LoCon-Tucker, LoHa, LoKr, DoRA, biases). */
const VARIANT = /(lora_mid|hada_|lokr_|dora_scale|lora_magnitude_vector|lora_B\.bias|lora_embedding_|\.diff(_b)?$|\.on_input$)/;
const PROCESSOR = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;

type Parsed = { component: string | null; module: string; role: 'down' | 'up' | 'alpha'; format: LoraFormat } | { problem: string };

/** What one tensor key holds, or why it cannot be read. */
export function parseLoraKey(key: string): Parsed {
  if (VARIANT.test(key)) return { problem: `"${key}" belongs to a LoRA variant that is not supported (plain LoRA only: no LoCon-Tucker, LoHa, LoKr, DoRA or LoRA biases)` };
  const kohya = KOHYA_PREFIXES.find(([p]) => key.startsWith(p));
  if (kohya) {
    const dot = key.indexOf('.');
    const role = dot > 0 ? KOHYA_ROLES[key.slice(dot + 1)] : undefined;
    if (!role) return { problem: `"${key}" is not a kohya LoRA tensor (expected <name>.lora_down.weight, .lora_up.weight or .alpha)` };
    return { component: kohya[1], module: key.slice(kohya[0].length, dot), role, format: 'kohya' };
  }
  const bare = key.startsWith('base_model.model.') ? key.slice('base_model.model.'.length) : key;
  const proc = PROCESSOR.exec(bare);
  let path: string;
  let role: 'down' | 'up' | 'alpha';
  if (proc) {
    path = `${proc[1]}.${proc[2] === 'to_out' ? 'to_out.0' : proc[2]}`;
    role = proc[3] as 'down' | 'up';
  } else {
    const r = PEFT_ROLES.find(([suffix]) => bare.endsWith(suffix));
    if (!r || bare.length === r[0].length) return { problem: `"${key}" is not a LoRA tensor (expected <module>.lora_A.weight / .lora_B.weight, or kohya lora_unet_… / lora_te_… keys)` };
    path = bare.slice(0, -r[0].length);
    role = r[1];
  }
  if (bare !== key) return { component: null, module: path, role, format: 'peft' };
  const dot = path.indexOf('.');
  return dot > 0 ? { component: path.slice(0, dot), module: path.slice(dot + 1), role, format: 'peft' } : { component: null, module: path, role, format: 'peft' };
}

/** Groups a file's keys by adapted module; problems (unreadable keys, duplicates) are collected, not thrown. */
export function groupLoraKeys(keys: string[], problems: string[]): LoraModuleEntry[] {
  const byModule = new Map<string, LoraModuleEntry>();
  for (const key of keys) {
    const p = parseLoraKey(key);
    if ('problem' in p) { problems.push(p.problem); continue; }
    const id = `${p.format}\0${p.component ?? ''}\0${p.module}`;
    let e = byModule.get(id);
    if (!e) byModule.set(id, e = { component: p.component, module: p.module, format: p.format });
    if (e[p.role]) problems.push(`"${key}" and "${e[p.role]}" are both the ${p.role} tensor of one module`);
    else e[p.role] = key;
  }
  const out: LoraModuleEntry[] = [];
  for (const e of byModule.values()) {
    if (e.down && e.up) out.push(e);
    else if (e.down || e.up) problems.push(`"${e.down ?? e.up}" has no matching ${e.down ? 'up (lora_B / lora_up)' : 'down (lora_A / lora_down)'} tensor`);
    else problems.push(`"${e.alpha}" is an alpha without lora_down/lora_up tensors`);
  }
  return out;
}

/** Alpha of a module from the file's metadata, when the file gives one. */
export type MetadataAlpha = (component: string | null, modulePath: string) => number | undefined;

function alphaValue(v: unknown, what: string, file: string): number {
  const n = typeof v === 'string' && /^\s*[-+0-9.eE]+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new LoraError(file, [`metadata ${what}=${JSON.stringify(v)?.slice(0, 80)} is not a finite number`]);
  return n;
}

/**
 * The metadata alpha rule (see the module comment). PEFT's `alpha_pattern` keys are regular expressions
 * matched against a module path's end; a regex from a file is not compiled here (it could backtrack
 * for ever), so only literal module-path suffixes are accepted and anything else is an error.
 */
export function metadataAlpha(file: SafetensorsFile): MetadataAlpha {
  const meta = file.metadata;
  const raw = meta.lora_adapter_metadata;
  const config: Record<string, unknown> = raw === undefined ? {} : parseJson(new TextEncoder().encode(raw), `${file.name} metadata lora_adapter_metadata`);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new LoraError(file.name, ['metadata lora_adapter_metadata is not a JSON object']);
  const plain = meta.lora_alpha !== undefined ? alphaValue(meta.lora_alpha, 'lora_alpha', file.name) : undefined;
  const patterns = new Map<string, [string, number][]>();
  const patternsOf = (key: string): [string, number][] => {
    let p = patterns.get(key);
    if (p) return p;
    const v = config[key] ?? {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LoraError(file.name, [`metadata lora_adapter_metadata.${key} is not an object`]);
    p = Object.entries(v).map(([k, a]) => {
      if (/[\\^$*+?()[\]{}|]/.test(k)) throw new LoraError(file.name, [`metadata ${key} key ${JSON.stringify(k.slice(0, 80))} is a regular expression; only literal module paths are supported`]);
      return [k, alphaValue(a, `${key}[${JSON.stringify(k.slice(0, 80))}]`, file.name)];
    });
    patterns.set(key, p);
    return p;
  };
  return (component, path) => {
    const pre = component ? `${component}.` : '';
    const hit = [...patternsOf(`${pre}alpha_pattern`), ...(pre ? patternsOf('alpha_pattern') : [])]
      .find(([k]) => path === k || path.endsWith(`.${k}`));
    if (hit) return hit[1];
    for (const key of [`${pre}lora_alpha`, 'lora_alpha']) if (config[key] != null) return alphaValue(config[key], `lora_adapter_metadata.${key}`, file.name);
    return plain;
  };
}
