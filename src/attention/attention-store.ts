/**
 * Attention analysis: a processor that computes attention exactly as the default one and records, per
 * attention module and denoising step, how much the module's output and its attention probabilities changed
 * since the previous step. This is the measurement behind T-GATE's observation that cross-attention converges
 * after a few steps (and behind `tgate analyze` and the automatic gate).
 *
 * Figures (names and definitions as in test/fixtures/ext/analysis/attention_convergence.json), for step i ≥ 1:
 * - out_l2 = ‖O_i − O_{i−1}‖₂ of the module output (after to_out; the whole batch, e.g. [uncond, cond]);
 *   out_l2_uncond / out_l2_cond: the same on batch row 0 / 1 (batch 2 only);
 * - out_rel = out_l2 / ‖O_{i−1}‖₂; out_norm = ‖O_i‖₂;
 * - probs_l2 = ‖P_i − P_{i−1}‖₂ of softmax(q kᵀ·scale) per head; probs_l2_per_head_row = probs_l2 / √(B·heads·Nq);
 * - per kind (attn1 = self, attn2 = cross): the arithmetic mean over modules of every figure but out_norm.
 * Only the previous step's tensors are kept per module, so memory stays bounded however many steps run.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import type { AttentionModule, AttnContext, AttnProcessor } from './processor.js';
import { attentionModules } from './registry.js';

/** Change of one module's attention between two consecutive steps. */
export interface AttentionChange {
  out_l2: number;
  out_l2_uncond?: number;
  out_l2_cond?: number;
  out_rel: number;
  out_norm: number;
  probs_l2?: number;
  probs_l2_per_head_row?: number;
}

export type AttentionKind = 'attn1' | 'attn2';

export interface KindChanges {
  /** Mean over the modules of this kind (out_norm excluded). */
  mean: Omit<AttentionChange, 'out_norm'>;
  per_module: Record<string, AttentionChange>;
}

/** Everything recorded for one step i (compared with step i − 1). */
export interface StepChanges {
  step: number;
  attn1?: KindChanges;
  attn2?: KindChanges;
}

export interface AttentionStoreOptions {
  /**
   * Also record the attention-probability change (recomputes q kᵀ and materialises the [B·heads, Nq, Nk]
   * probabilities of every module: costly at large resolutions). Default true.
   */
  probs?: boolean;
}

interface Prev {
  out: tf.Tensor;
  outNorm: number;
  probs?: tf.Tensor;
}

/** The kind of an attention call: a module named `…attn2` or called with encoder states is cross-attention. */
function kindOf(path: string, cross: boolean): AttentionKind {
  const m = /attn([12])$/.exec(path);
  if (m) return m[1] === '1' ? 'attn1' : 'attn2';
  return cross ? 'attn2' : 'attn1';
}

/**
 * Default attention plus convergence bookkeeping. Build it from the denoiser (to name the modules), install it
 * with `setAttnProcessor(denoiser, store)`, run a generation, then read {@link steps}. The step index comes from
 * the AttnContext (the denoising loop sets it); without one, each module's calls are counted.
 */
export class AttentionStoreProcessor implements AttnProcessor {
  private readonly names = new Map<AttentionModule, string>();
  private readonly prev = new Map<AttentionModule, Prev>();
  private readonly calls = new Map<AttentionModule, number>();
  private readonly perStep = new Map<number, Map<string, { kind: AttentionKind; c: AttentionChange }>>();
  private readonly probs: boolean;

  constructor(root: Module, opts: AttentionStoreOptions = {}) {
    for (const [path, m] of attentionModules(root)) this.names.set(m, path);
    this.probs = opts.probs ?? true;
  }

  call(attn: AttentionModule, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null, ctx: AttnContext): tf.Tensor {
    const y = attn.finish(attn.attend(hidden, enc, bias), hidden);
    const path = this.names.get(attn);
    if (path === undefined) return y;
    const n = this.calls.get(attn) ?? 0;
    this.calls.set(attn, n + 1);
    this.measure(attn, path, ctx.step ?? n, y, hidden, enc, bias);
    return y;
  }

  private measure(attn: AttentionModule, path: string, step: number, y: tf.Tensor, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null): void {
    const prev = this.prev.get(attn);
    const b = y.shape[0];
    const probs = this.probs ? tf.keep(attn.probabilities(hidden, enc, bias)) : undefined;
    // Sums of squares are reduced on the device along the last axis only and finished in float64 here: a
    // float32 sum over millions of small squared probabilities loses percents (measured: 2% on 8M terms).
    const comparable = prev !== undefined && prev.out.shape.join() === y.shape.join();
    const pp = comparable && probs && prev.probs && prev.probs.shape.join() === probs.shape.join() ? prev.probs : null;
    const parts = tf.tidy(() => {
      const c = y.shape[y.rank - 1]!;
      const rowSq = (t: tf.Tensor) => tf.sum(tf.square(t.reshape([b, -1, c])), 2);
      const out: tf.Tensor[] = [rowSq(y)];
      if (comparable) out.push(rowSq(tf.sub(y, prev.out)));
      if (pp) out.push(tf.sum(tf.square(tf.sub(probs!, pp)), -1).reshape([-1]));
      return out;
    });
    const reads = parts.map((t) => t.dataSync());
    parts.forEach((t) => t.dispose());
    const rows = (v: ArrayLike<number>): number[] => {
      const per = v.length / b;
      const acc = new Array<number>(b).fill(0);
      for (let i = 0; i < v.length; i++) acc[Math.floor(i / per)] += v[i];
      return acc;
    };
    const normSq = rows(reads[0]).reduce((a, x) => a + x, 0);
    const outNorm = Math.sqrt(normSq);
    if (comparable) {
      const dRows = rows(reads[1]);
      const dSq = dRows.reduce((a, x) => a + x, 0);
      const c: AttentionChange = { out_l2: Math.sqrt(dSq), out_rel: Math.sqrt(dSq) / prev.outNorm, out_norm: outNorm };
      if (b === 2) {
        c.out_l2_uncond = Math.sqrt(dRows[0]);
        c.out_l2_cond = Math.sqrt(dRows[1]);
      }
      if (pp) {
        let pSq = 0;
        for (const x of reads[2]) pSq += x;
        c.probs_l2 = Math.sqrt(pSq);
        c.probs_l2_per_head_row = c.probs_l2 / Math.sqrt(probs!.shape[0] * probs!.shape[1]!);
      }
      if (!this.perStep.has(step)) this.perStep.set(step, new Map());
      this.perStep.get(step)!.set(path, { kind: kindOf(path, enc !== null), c });
    }
    if (prev) {
      prev.out.dispose();
      prev.probs?.dispose();
    }
    this.prev.set(attn, { out: tf.keep(y.clone()), outNorm, probs });
  }

  /** The recorded steps in order (each compared with the previous one). */
  steps(): StepChanges[] {
    return [...this.perStep.keys()].sort((a, b) => a - b).map((s) => this.step(s)!);
  }

  /** Changes recorded at one step (undefined when none). */
  step(step: number): StepChanges | undefined {
    const rec = this.perStep.get(step);
    if (!rec) return undefined;
    const out: StepChanges = { step };
    for (const kind of ['attn1', 'attn2'] as const) {
      const mods = [...rec].filter(([, r]) => r.kind === kind);
      if (mods.length === 0) continue;
      const per_module = Object.fromEntries(mods.map(([p, r]) => [p, r.c]));
      const keys = ['out_l2', 'out_l2_uncond', 'out_l2_cond', 'out_rel', 'probs_l2', 'probs_l2_per_head_row'] as const;
      const mean: Omit<AttentionChange, 'out_norm'> = { out_l2: 0, out_rel: 0 };
      for (const k of keys) {
        const vals = mods.map(([, r]) => r.c[k]);
        if (vals.every((x): x is number => x !== undefined)) mean[k] = vals.reduce((a, x) => a + x, 0) / vals.length;
      }
      out[kind] = { mean, per_module };
    }
    return out;
  }

  /** Number of tensors held (previous step only: one or two per module). */
  get heldTensors(): number {
    let n = 0;
    for (const p of this.prev.values()) n += p.probs ? 2 : 1;
    return n;
  }

  /** Frees the held tensors and forgets everything recorded. */
  reset(): void {
    for (const p of this.prev.values()) {
      p.out.dispose();
      p.probs?.dispose();
    }
    this.prev.clear();
    this.calls.clear();
    this.perStep.clear();
  }
}
