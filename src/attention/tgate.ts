/**
 * TGATE (arXiv 2404.02747; reference: T-GATE commit ab2a88f, tgate/tgate_utils.py): cache attention
 * outputs and reuse them on later steps, skipping the whole attention computation.
 *
 * The per-step schedule ({@link tgateFlags}) decides for cross- and self-attention whether to compute,
 * compute and cache, or reuse; the pipeline puts the flags into the AttnContext of each denoiser call and
 * {@link TgateProcessor} acts on them. Caches belong to one generation: {@link TgateProcessor.reset}.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { AttentionModule, AttnContext, AttnProcessor } from './processor.js';

export interface TgateOptions {
  /**
   * First step (0-based) at which cross-attention is reused and guidance dropped. Default 10. 'auto': decided
   * during the generation from the measured cross-attention change (src/attention/auto-gate.ts).
   */
  gateStep?: number | 'auto';
  /** Self-attention cache interval before the gate. Default 5. */
  spInterval?: number;
  /** Self-attention cache interval after the gate. Default 1. */
  fiInterval?: number;
  /** Steps before self-attention caching starts. Default 2. */
  warmUp?: number;
  /** LCM mode: no classifier-free guidance, caches keep their batch (no averaging). */
  lcm?: boolean;
  /**
   * gateStep 'auto' only: gate once the mean relative change of the cross-attention outputs between two
   * consecutive steps falls below this (default AUTO_GATE_THRESHOLD in src/attention/auto-gate.ts).
   */
  autoThreshold?: number;
}

/**
 * Decides the gate while a generation runs (gateStep 'auto'). The denoising loop asks {@link isCacheStep}
 * before each step and, once it answers true for step i, runs step i as the cache step (gate = i + 1).
 */
export interface GateController {
  /** Before step i (TGATE's step count): must step i cache the cross-attention (i.e. gate = i + 1)? */
  isCacheStep(step: number): boolean;
  /** After step i's denoiser call, while the gate is still open (reads what was measured during the step). */
  afterStep(step: number): Promise<void>;
}

export interface ResolvedTgate {
  /** The gate; Infinity while an automatic gate is undecided. */
  gateStep: number;
  spInterval: number;
  fiInterval: number;
  warmUp: number;
  lcm: boolean;
  /** Set for gateStep 'auto'; the pipeline's TGATE session attaches the controller. */
  auto: { threshold?: number; controller?: GateController } | null;
}

/** What the attention processors do at one step (names as in T-GATE's kwargs). */
export interface TgateFlags {
  caCache: boolean;
  caReuse: boolean;
  saCache: boolean;
  saReuse: boolean;
  /** false: the cache is the mean of the unconditional and conditional halves. */
  keepShape: boolean;
}

/** Flags before the first schedule update (T-GATE registers all-false, keep_shape true). */
export const TGATE_IDLE: TgateFlags = { caCache: false, caReuse: false, saCache: false, saReuse: false, keepShape: true };

/** Fills defaults and rejects values that cannot work, naming them. */
export function resolveTgate(o: TgateOptions, numInferenceSteps: number): ResolvedTgate {
  const auto = o.gateStep === 'auto';
  const r: ResolvedTgate = {
    gateStep: auto ? Infinity : (o.gateStep as number | undefined) ?? 10, spInterval: o.spInterval ?? 5, fiInterval: o.fiInterval ?? 1, warmUp: o.warmUp ?? 2,
    lcm: o.lcm ?? false, auto: auto ? { threshold: o.autoThreshold } : null,
  };
  if (o.autoThreshold !== undefined && !auto) throw new Error(`tgate.autoThreshold needs gateStep 'auto' (gateStep is ${o.gateStep})`);
  if (auto && o.autoThreshold !== undefined && !(o.autoThreshold > 0 && Number.isFinite(o.autoThreshold))) {
    throw new Error(`tgate.autoThreshold must be a positive number, got ${o.autoThreshold}`);
  }
  if (typeof r.gateStep !== 'number') throw new Error(`tgate.gateStep must be an integer or 'auto', got ${JSON.stringify(o.gateStep)}`);
  const int = (k: 'gateStep' | 'spInterval' | 'fiInterval' | 'warmUp', min: number) => {
    const v = r[k] as number;
    if (!Number.isInteger(v) || v < min) throw new Error(`tgate.${k} must be an integer ≥ ${min}, got ${v}`);
  };
  if (!auto) int('gateStep', 1);
  int('spInterval', 1);
  int('fiInterval', 1);
  int('warmUp', 0);
  if (!auto && r.gateStep > numInferenceSteps) {
    throw new Error(`tgate.gateStep ${r.gateStep} is beyond the ${numInferenceSteps} inference steps (choose 1…${numInferenceSteps})`);
  }
  return r;
}

/** T-GATE's `tgate_scheduler` for denoising step `i` (counted after the scheduler's warm-up steps). */
export function tgateFlags(i: number, t: ResolvedTgate): TgateFlags {
  const g = t.gateStep;
  if (i < g - 1) {
    // Semantics-planning stage: cross-attention computed, self-attention cached every spInterval steps.
    let sa: [boolean, boolean];
    if (i < t.warmUp) sa = [false, false];
    else if (i === t.warmUp || i % t.spInterval === 0) sa = [true, false];
    else sa = [false, true];
    return { caCache: false, caReuse: false, saCache: sa[0], saReuse: sa[1], keepShape: true };
  }
  if (i === g - 1) return { caCache: true, caReuse: false, saCache: true, saReuse: false, keepShape: t.lcm };
  // Fidelity-improving stage: cross-attention reused, self-attention recomputed every fiInterval steps.
  const saCache = i % t.fiInterval === 0;
  return { caCache: false, caReuse: true, saCache, saReuse: !saCache, keepShape: true };
}

/** The AttnContext field TGATE reads. */
export interface TgateContext extends AttnContext {
  tgate?: TgateFlags;
}

/**
 * Computes, caches or reuses each attention module's output (after the out-projection, before the
 * residual) according to `ctx.tgate`. Without flags it behaves as the default processor.
 */
export class TgateProcessor implements AttnProcessor {
  private readonly caches = new Map<AttentionModule, tf.Tensor>();
  /** The caches that hold the mean of the guidance halves (keepShape false) rather than the whole batch. */
  private readonly averaged = new Set<AttentionModule>();

  reuses(attn: AttentionModule, cross: boolean, ctx: TgateContext): boolean {
    const f = ctx.tgate;
    // As in T-GATE: reuse only when a cache exists; otherwise compute (without caching).
    return !!f && (cross ? f.caReuse : f.saReuse) && this.caches.has(attn);
  }

  call(attn: AttentionModule, hidden: tf.Tensor, enc: tf.Tensor | null, bias: tf.Tensor | null, ctx: TgateContext): tf.Tensor {
    const f = ctx.tgate;
    if (!f) return attn.finish(attn.attend(hidden, enc, bias), hidden);
    const cross = enc !== null;
    const cache = cross ? f.caCache : f.saCache;
    const cached = this.caches.get(attn);
    if (cached && this.reuses(attn, cross, ctx)) {
      if (cached.shape[0] !== hidden.shape[0]) throw new Error(batchMismatch(cached.shape[0], hidden.shape[0], this.averaged.has(attn)));
      return attn.finish(cached, hidden);
    }
    const out = attn.attend(hidden, enc, bias);
    if (cache) {
      const value = f.keepShape ? out : tf.tidy(() => {
        const [uncond, cond] = tf.split(out, 2, 0);
        return tf.div(tf.add(uncond, cond), 2);
      });
      this.store(attn, value);
      if (f.keepShape) this.averaged.delete(attn);
      else this.averaged.add(attn);
    }
    return attn.finish(out, hidden);
  }

  private store(attn: AttentionModule, value: tf.Tensor): void {
    const old = this.caches.get(attn);
    // Kept out of the surrounding forward's tidy scope: the cache outlives this step.
    this.caches.set(attn, tf.keep(value));
    if (old && old !== value) old.dispose();
  }

  /** Number of attention modules holding a cache (for tests and diagnostics). */
  get cacheSize(): number { return this.caches.size; }

  /** Drops every cache: called at the start and end of each generation. */
  reset(): void {
    for (const t of this.caches.values()) t.dispose();
    this.caches.clear();
    this.averaged.clear();
  }
}

/**
 * Why a reused cache does not fit the step: the cache step averaged the guidance halves but guidance is still
 * on, lcm kept the whole batch but guidance was dropped, or the cache is another run's.
 */
function batchMismatch(cached: number, now: number, averaged: boolean): string {
  const why = averaged && now === 2 * cached
    ? 'the cache step averaged the two guidance halves (tgate.lcm false), so from the gate on the denoiser must run without guidance (the conditional half only)'
    : !averaged && cached === 2 * now
      ? 'the cache step kept the whole guidance batch (tgate.lcm true), which only works when guidance never runs: drop lcm, or set guidanceScale ≤ 1'
      : 'the cache was made by a step of another batch: a TgateProcessor\'s caches belong to one generation on one model (reset() before another)';
  return `TGATE: the cached attention output has batch ${cached} but this step runs batch ${now}: ${why}`;
}
