/**
 * Matching a LoRA file's modules to a model's real layers, and reading its tensors once every key and shape
 * has been checked. kohya names replace every "." of a module path by "_", which is ambiguous
 * (`down_blocks_0_attentions_0_proj_in`): they are looked up in a table of the model's own module paths
 * spelled that way (plus, for a UNet, the original SD names of ./ldm-names.ts), never rewritten by string
 * rules, so a name that fits two modules is reported instead of guessed.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { Linear } from '../layers/linear.js';
import { Conv2d } from '../layers/conv.js';
import type { LowRankBranch } from '../layers/low-rank.js';
import { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import { ldmAliases } from './ldm-names.js';
import type { LoraModuleEntry, MetadataAlpha } from './lora-file.js';

/** A layer a LoRA can adapt. */
export type LoraLayer = Linear | Conv2d;

/** One adapted layer with its branch (the down/up tensors in our layout; see layers/low-rank.ts). */
export interface LoraTarget {
  component: string;
  /** Module path in the component (diffusers / transformers name). */
  path: string;
  layer: LoraLayer;
  rank: number;
  alpha: number;
  /** `scale` = the adapter's scale × alpha / rank. */
  branch: LowRankBranch;
}

/** A matched module whose shapes fit, before its tensors are read. */
export interface PlannedTarget { component: string; path: string; layer: LoraLayer; entry: LoraModuleEntry; rank: number }

/** Levenshtein distance (for "closest module" hints; callers bound how often it runs). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** How many unmatched keys get "closest module" hints (each costs a scan of every layer name). */
const HINTED = 8;

/** The layers of one component under every name a LoRA file may give them. */
export class ModuleIndex {
  readonly layers = new Map<string, LoraLayer>();
  private readonly kinds = new Map<string, string>();
  /** kohya spelling → module paths (more than one: ambiguous). */
  private readonly kohya = new Map<string, string[]>();
  private hinted = 0;

  constructor(readonly component: string, model: Module) {
    for (const [p, m] of model.namedModules()) {
      this.kinds.set(p, m.constructor.name);
      if (m instanceof Linear || m instanceof Conv2d) this.layers.set(p, m);
    }
    const add = (name: string, path: string) => {
      const k = name.replace(/\./g, '_');
      const paths = this.kohya.get(k) ?? [];
      if (!paths.includes(path)) this.kohya.set(k, [...paths, path]);
    };
    for (const p of this.layers.keys()) add(p, p);
    if (model instanceof UNet2DConditionModel) for (const [p, alias] of ldmAliases(model, this.layers.keys())) add(alias, p);
  }

  /** The module path an entry names, or the problem with it. */
  resolve(e: LoraModuleEntry, key: string): { path: string } | { problem: string } {
    if (e.format === 'kohya') {
      const paths = this.kohya.get(e.module) ?? [];
      if (paths.length === 1) return { path: paths[0] };
      if (paths.length > 1) return { problem: `"${key}" fits several ${this.component} modules (${paths.join(', ')})` };
      return { problem: `"${key}" matches no ${this.component} layer${this.hint(e.module, true)}` };
    }
    if (this.layers.has(e.module)) return { path: e.module };
    const kind = this.kinds.get(e.module);
    if (kind) return { problem: `"${key}": ${this.component} module "${e.module}" is a ${kind}; a LoRA adapts Linear and Conv2d layers` };
    return { problem: `"${key}" matches no ${this.component} layer${this.hint(e.module, false)}` };
  }

  /** " (closest: a, b, c)" for the first few unmatched names. */
  private hint(name: string, kohya: boolean): string {
    if (this.hinted++ >= HINTED) return '';
    const scored = [...this.layers.keys()].map((p) => [editDistance(name, kohya ? p.replace(/\./g, '_') : p), p] as const);
    scored.sort((a, b) => a[0] - b[0]);
    return ` (closest ${this.component} modules: ${scored.slice(0, 3).map(([, p]) => p).join(', ')})`;
  }
}

const shape = (s: number[]) => `[${s.join(', ')}]`;

/**
 * The rank when `down`/`up` fit `layer` (Linear: [r, in] and [out, r]; Conv2d: [r, in, k, k] and
 * [out, r, 1, 1]; a 1×1 convolution and a Linear accept each other's spelling), or the problem.
 */
export function checkShapes(layer: LoraLayer, e: LoraModuleEntry, down: number[], up: number[], where: string): number | string {
  const linear = layer instanceof Linear;
  const [inF, outF, k] = linear ? [layer.inFeatures, layer.outFeatures, 1] : [layer.inChannels, layer.outChannels, layer.kernelSize];
  const what = linear ? `Linear ${inF}→${outF}` : `Conv2d ${inF}→${outF} ${k}×${k}`;
  const r = down[0];
  if (up[1] !== r) return `"${e.down}" ${shape(down)} and "${e.up}" ${shape(up)} disagree on the rank (${r} vs ${up[1]})`;
  const ok1x1 = (s: number[]) => s.length === 2 || (s.length === 4 && s[2] === 1 && s[3] === 1);
  const downOk = k === 1 ? ok1x1(down) && down[1] === inF : down.length === 4 && down[1] === inF && down[2] === k && down[3] === k;
  const upOk = ok1x1(up) && up[0] === outF;
  if (r >= 1 && downOk && upOk) return r;
  const want = k === 1 ? `[r, ${inF}] and [${outF}, r]` : `[r, ${inF}, ${k}, ${k}] and [${outF}, r, 1, 1]`;
  return `"${e.down}" ${shape(down)} / "${e.up}" ${shape(up)} do not fit ${where} (${what}): expected ${want}`;
}

/** The factor a branch applies: scale · (alpha / rank), rounded to float32 as torch rounds a Python scalar. */
export function branchScale(scale: number, alpha: number, rank: number): number {
  return Math.fround(scale * (alpha / rank));
}

/** Reads a float tensor's values, failing with the key when it is an integer tensor. */
async function floats(file: SafetensorsFile, key: string): Promise<Float32Array> {
  const { values, dtype } = await file.readValues(key);
  if (dtype !== 'float32') throw new Error(`${file.name}: "${key}" has dtype ${file.info(key).dtype}; LoRA tensors are floating point`);
  return values as Float32Array;
}

/**
 * Reads the tensors of checked targets into branches (our layout: down [in, r] or HWIO [k, k, in, r], up
 * [r, out]) with their alpha: the module's own, else the metadata's, else `alpha`, else the rank.
 */
export async function readTargets(
  file: SafetensorsFile, planned: PlannedTarget[], scale: number, alphaFor: MetadataAlpha, alpha?: number,
): Promise<LoraTarget[]> {
  const out: LoraTarget[] = [];
  try {
    for (const t of planned) {
      const { entry: e, layer, rank } = t;
      const a = e.alpha ? (await floats(file, e.alpha))[0] : alphaFor(e.component, t.path) ?? alpha ?? rank;
      if (e.alpha && (file.info(e.alpha).shape.reduce((x, y) => x * y, 1) !== 1 || !Number.isFinite(a))) {
        throw new Error(`${file.name}: "${e.alpha}" must hold one finite number, got shape ${shape(file.info(e.alpha).shape)}`);
      }
      const downV = await floats(file, e.down!);
      const upV = await floats(file, e.up!);
      const inF = layer instanceof Linear ? layer.inFeatures : layer.inChannels;
      const outF = layer instanceof Linear ? layer.outFeatures : layer.outChannels;
      const k = layer instanceof Linear ? 1 : layer.kernelSize;
      const branch = tf.tidy(() => {
        // torch down [r, in, k, k] → HWIO [k, k, in, r]; a Linear's [r, in] → [in, r]; up [out, r] → [r, out].
        const d = tf.tensor4d(downV, [rank, inF, k, k]).transpose([2, 3, 1, 0]);
        return {
          down: tf.keep(layer instanceof Linear ? d.reshape([inF, rank]) : d),
          up: tf.keep(tf.tensor2d(upV, [outF, rank]).transpose() as tf.Tensor2D),
        };
      });
      out.push({ component: t.component, path: t.path, layer, rank, alpha: a, branch: { ...branch, scale: branchScale(scale, a, rank) } });
    }
  } catch (err) {
    for (const t of out) { t.branch.down.dispose(); t.branch.up.dispose(); }
    throw err;
  }
  return out;
}
