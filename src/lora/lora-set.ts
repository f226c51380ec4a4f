/**
 * LoRA adapters on a set of components (a pipeline's UNet / transformer and text encoders, or one model).
 *
 * A loaded adapter runs unfused: each adapted Linear/Conv2d adds scale · alpha / rank · up(down(x)) to its
 * output (layers/low-rank.ts), so generation gives the LoRA result at once, several adapters add up, and a
 * scale can change between generations for free. {@link LoraSet.fuse} writes the deltas into the weights
 * (W + scale · alpha / rank · up · down), after which a forward costs exactly what the plain model costs;
 * {@link LoraSet.unfuse} writes the original weights back bit for bit (./fuse.ts) and the adapters run
 * unfused again, as diffusers' `unfuse_lora` leaves them. {@link LoraSet.unload} removes an adapter.
 */
import type { Module, Parameter } from '../nn/module.js';
import type { HttpRangeOptions, SafetensorsFile } from '../io/safetensors.js';
import { FusedWeights } from './fuse.js';
import { LoraError, groupLoraKeys, metadataAlpha, type LoraFormat } from './lora-file.js';
import { ModuleIndex, branchScale, checkShapes, readTargets, type LoraTarget, type PlannedTarget } from './targets.js';
import { openLoraSource, type LoraSource } from './source.js';
import { withModelsLocked } from '../nn/model-lock.js';

/**
 * Options of `loadLora`. For a LoRA read by URL: `readAheadBytes` (8 MiB by default: a LoRA that size is one range
 * request), `signal` (aborts the reads with an AbortError) and `timeoutMs` (a read making no progress for that
 * long fails, naming the URL; default 60 s), as for every network read.
 */
export interface LoadLoraOptions extends Pick<HttpRangeOptions, 'readAheadBytes' | 'signal' | 'timeoutMs'> {
  /** Multiplier of the adapter's delta (diffusers' adapter weight / `lora_scale`); default 1. */
  scale?: number;
  /** Name to address the adapter by; default `default_<n>` as diffusers names them. */
  name?: string;
  /**
   * Alpha of the modules the file gives none for (neither a module `.alpha` tensor nor metadata): e.g. the
   * `lora_alpha` of a PEFT `adapter_config.json` kept beside the weights. Default: the module's rank.
   */
  alpha?: number;
  /** Apply only these components' keys (`unet`, `text_encoder`, …); default every component the file has. */
  components?: string[];
  /** fetch for URLs (default: the global one). */
  fetch?: typeof fetch;
}

/** What {@link LoraSet.list} reports of an adapter. */
export interface LoraInfo {
  name: string;
  scale: number;
  fused: boolean;
  format: LoraFormat;
  source: string;
  /** Adapted layers per component. */
  modules: Record<string, number>;
}

interface Adapter { info: Omit<LoraInfo, 'modules'>; targets: LoraTarget[] }

/** `tgate forward --lora` names a component by its diffusers prefix or its kohya one. */
const PREFIX_ALIASES: Record<string, string> = { lora_unet: 'unet', lora_te: 'text_encoder', lora_te1: 'text_encoder', lora_te2: 'text_encoder_2', lora_transformer: 'transformer' };

function checkScale(scale: number): number {
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`LoRA scale must be a finite number, got ${scale}`);
  return scale;
}

export class LoraSet {
  private readonly adapters = new Map<string, Adapter>();
  private readonly fused = new FusedWeights();

  /** `components` gives the current models by component name (a missing one may be null). */
  constructor(private readonly components: () => Record<string, Module | null | undefined>) {}

  /**
   * Loads an adapter, checked whole against the models before any tensor is created; it runs unfused. Like
   * every change here it waits for the generations and changes called before it (`nn/model-lock.ts`).
   */
  load(source: LoraSource, opts: LoadLoraOptions = {}): Promise<LoraInfo> {
    return this.locked(async () => {
      const scale = checkScale(opts.scale ?? 1);
      const name = opts.name ?? this.defaultName();
      if (typeof name !== 'string' || !name) throw new Error('a LoRA name must be a non-empty string');
      if (this.adapters.has(name)) throw new Error(`a LoRA named "${name}" is already loaded (unload it first, or pass another name)`);
      if (opts.alpha !== undefined && !Number.isFinite(opts.alpha)) throw new Error(`LoRA alpha must be a finite number, got ${opts.alpha}`);
      const { file, owned } = await openLoraSource(source, opts);
      try {
        const { planned, format } = this.plan(file, opts.components);
        const targets = await readTargets(file, planned, scale, metadataAlpha(file), opts.alpha);
        for (const t of targets) t.layer.lowRank.push(t.branch);
        this.adapters.set(name, { info: { name, scale, fused: false, format, source: file.name }, targets });
        return this.info(this.adapters.get(name)!);
      } finally {
        if (owned) await file.close();
      }
    });
  }

  /** Runs a change of the models' weights or LoRA branches when no generation or other change holds them. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    return withModelsLocked(Object.values(this.components()).filter((m): m is Module => !!m), fn);
  }

  /** Every key matched to a layer with fitting shapes, or a {@link LoraError} listing every problem. */
  private plan(file: SafetensorsFile, only?: string[]): { planned: PlannedTarget[]; format: LoraFormat } {
    const problems: string[] = [];
    const entries = groupLoraKeys(file.keys(), problems);
    const models = Object.entries(this.components()).filter((e): e is [string, Module] => !!e[1]);
    const names = models.map(([n]) => n);
    const indexes = new Map<string, ModuleIndex>();
    const seen = new Map<string, string>();
    const planned: PlannedTarget[] = [];
    let format: LoraFormat | null = null;
    for (const e of entries) {
      const key = e.down!;
      let component = e.component;
      // A model-level file (no component prefix, or one naming no component) on a single model.
      if ((component === null || !names.includes(component)) && e.format === 'peft' && models.length === 1 && !KNOWN.has(component ?? '')) {
        e.module = component === null ? e.module : `${component}.${e.module}`;
        component = e.component = names[0];
      }
      if (component === null) { problems.push(`"${key}" names no component (${names.join(', ')})`); continue; }
      if (only && !only.includes(component)) continue;
      const model = models.find(([n]) => n === component)?.[1];
      if (!model) {
        problems.push(`"${key}" is for ${component}, which is not loaded here (components: ${names.join(', ')}); pass components: [...] to apply only some`);
        continue;
      }
      let index = indexes.get(component);
      if (!index) indexes.set(component, index = new ModuleIndex(component, model));
      const r = index.resolve(e, key);
      if ('problem' in r) { problems.push(r.problem); continue; }
      const id = `${component}.${r.path}`;
      if (seen.has(id)) { problems.push(`"${key}" and "${seen.get(id)}" both adapt ${id}`); continue; }
      seen.set(id, key);
      const layer = index.layers.get(r.path)!;
      const rank = checkShapes(layer, e, file.info(e.down!).shape, file.info(e.up!).shape, `${component} module "${r.path}"`);
      if (typeof rank === 'string') { problems.push(rank); continue; }
      if (format && format !== e.format) problems.push(`"${key}" mixes ${e.format} keys into a ${format} file`);
      format = e.format;
      planned.push({ component, path: r.path, layer, entry: e, rank });
    }
    if (!problems.length && !planned.length) problems.push(only ? `no LoRA keys for ${only.join(', ')}` : 'no LoRA tensors in the file');
    if (problems.length) throw new LoraError(file.name, problems);
    return { planned, format: format! };
  }

  private defaultName(): string {
    let n = 0;
    while (this.adapters.has(`default_${n}`)) n++;
    return `default_${n}`;
  }

  private adapter(name: string): Adapter {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`no LoRA named "${name}" (loaded: ${[...this.adapters.keys()].join(', ') || 'none'})`);
    return a;
  }

  /**
   * Writes the deltas of the named adapters (default: all) into the weights. The originals are kept (in JS
   * memory) until {@link unfuse}/{@link unload}.
   */
  fuse(names?: string[]): Promise<void> {
    return this.locked(async () => {
      const chosen = (names ?? [...this.adapters.keys()]).map((n) => this.adapter(n)).filter((a) => !a.info.fused);
      for (const a of chosen) {
        a.info.fused = true;
        for (const t of a.targets) detach(t);
      }
      await this.rewrite(chosen);
    });
  }

  /** Restores the original weights bit for bit; every adapter runs unfused again. */
  unfuse(): Promise<void> {
    return this.locked(async () => {
      const chosen = [...this.adapters.values()].filter((a) => a.info.fused);
      for (const a of chosen) {
        a.info.fused = false;
        for (const t of a.targets) t.layer.lowRank.push(t.branch);
      }
      await this.rewrite(chosen);
    });
  }

  /** Removes the named adapter (default: all), restoring what it had fused, and frees its tensors. */
  unload(name?: string): Promise<void> {
    return this.locked(async () => {
      const chosen = name === undefined ? [...this.adapters.values()] : [this.adapter(name)];
      const wasFused = chosen.filter((a) => a.info.fused);
      for (const a of chosen) {
        this.adapters.delete(a.info.name);
        a.info.fused = false;
      }
      for (const a of chosen) for (const t of a.targets) detach(t);
      await this.rewrite(wasFused);
      for (const a of chosen) {
        for (const t of a.targets) {
          t.branch.down.dispose();
          t.branch.up.dispose();
        }
      }
    });
  }

  /** Changes an adapter's scale (a fused adapter's weights are recomputed from the originals). */
  setScale(name: string, scale: number): Promise<void> {
    return this.locked(async () => {
      const a = this.adapter(name);
      a.info.scale = checkScale(scale);
      for (const t of a.targets) t.branch.scale = branchScale(scale, t.alpha, t.rank);
      if (a.info.fused) await this.rewrite([a]);
    });
  }

  list(): LoraInfo[] {
    return [...this.adapters.values()].map((a) => this.info(a));
  }

  /** Bytes of original weights kept in JS memory while adapters are fused. */
  get fusedOriginalBytes(): number { return this.fused.bytes; }

  /** Frees every adapter's tensors without touching the weights (for a pipeline being disposed). */
  dispose(): void {
    for (const a of this.adapters.values()) for (const t of a.targets) { detach(t); t.branch.down.dispose(); t.branch.up.dispose(); }
    this.adapters.clear();
    this.fused.clear();
  }

  /** Recomputes every weight the `changed` adapters touch from its original and the adapters fused on it now. */
  private async rewrite(changed: Adapter[]): Promise<void> {
    const touched = new Map<Parameter, string>();
    for (const a of changed) for (const t of a.targets) touched.set(t.layer.weight, `${t.component}.${t.path}`);
    for (const [p, path] of touched) {
      const on = [...this.adapters.values()].filter((a) => a.info.fused).flatMap((a) => a.targets.filter((t) => t.layer.weight === p));
      await this.fused.write(p, path, on);
    }
  }

  private info(a: Adapter): LoraInfo {
    const modules: Record<string, number> = {};
    for (const t of a.targets) modules[t.component] = (modules[t.component] ?? 0) + 1;
    return { ...a.info, modules };
  }
}

/** Component names a LoRA file's prefix may carry (diffusers' pipeline component names). */
const KNOWN = new Set(['unet', 'text_encoder', 'text_encoder_2', 'transformer']);

function detach(t: LoraTarget): void {
  const i = t.layer.lowRank.indexOf(t.branch);
  if (i >= 0) t.layer.lowRank.splice(i, 1);
}

/**
 * Fuses the keys of one component of a LoRA file into `model` (what `tgate forward --lora` does to check a
 * LoRA against PyTorch dumps). `prefix` names the component as the file does: `unet`, `text_encoder`,
 * `text_encoder_2`, `transformer`, or kohya's `lora_unet`, `lora_te`, `lora_te1`, `lora_te2`; keys of other
 * components are ignored. Returns the set, to unfuse or unload later.
 */
export async function applyLora(
  model: Module, source: LoraSource, o: { prefix: string } & Omit<LoadLoraOptions, 'components'>,
): Promise<LoraSet> {
  const component = PREFIX_ALIASES[o.prefix] ?? o.prefix;
  if (!KNOWN.has(component)) throw new Error(`unknown LoRA prefix "${o.prefix}" (use one of ${[...KNOWN, ...Object.keys(PREFIX_ALIASES)].join(', ')})`);
  const set = new LoraSet(() => ({ [component]: model }));
  await set.load(source, { ...o, components: [component] });
  await set.fuse();
  return set;
}
