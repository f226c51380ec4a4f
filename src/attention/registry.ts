/** attnProcessors() / setAttnProcessor() / wrapProcessors() over any Module tree, keyed `<module path>.processor`. */
import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { AttentionModule, type AttnProcessor } from './processor.js';

/** Every attention module below `root` (diffusers, CLIP and T5 attentions alike), keyed by its module path. */
export function attentionModules(root: Module): Map<string, AttentionModule> {
  const out = new Map<string, AttentionModule>();
  for (const [path, m] of root.namedModules()) if (m instanceof AttentionModule) out.set(path, m);
  return out;
}

/** Every attention's processor below `root`, keyed `<module path>.processor` (diffusers' `attn_processors`). */
export function attnProcessors(root: Module): Map<string, AttnProcessor> {
  const out = new Map<string, AttnProcessor>();
  for (const [path, m] of attentionModules(root)) out.set(`${path}.processor`, m.processor);
  return out;
}

/**
 * Sets one processor for every attention, or one per module from a record that must name exactly
 * every `<path>.processor` key (missing and extra keys are reported together).
 */
export function setAttnProcessor(root: Module, p: AttnProcessor | Record<string, AttnProcessor>): void {
  const mods = attentionModules(root);
  if (typeof (p as AttnProcessor).call === 'function') {
    for (const m of mods.values()) m.processor = p as AttnProcessor;
    return;
  }
  const rec = p as Record<string, AttnProcessor>;
  const want = new Set([...mods.keys()].map((k) => `${k}.processor`));
  const missing = [...want].filter((k) => !(k in rec));
  const extra = Object.keys(rec).filter((k) => !want.has(k));
  if (missing.length || extra.length) {
    throw new Error(`setAttnProcessor: the record must name all ${want.size} processors` +
      (missing.length ? `; missing: ${missing.join(', ')}` : '') + (extra.length ? `; extra: ${extra.join(', ')}` : ''));
  }
  for (const [path, m] of mods) m.processor = rec[`${path}.processor`];
}

/**
 * Every member of {@link AttnProcessor}. `satisfies` makes the compiler reject this list when the interface
 * gains a member it does not name, so a wrapper can never silently drop one (as dropping `reuses` once made
 * TGATE compute norms it would throw away).
 */
const PROCESSOR_MEMBERS = { call: true, reuses: true, reset: true } as const satisfies Record<keyof AttnProcessor, true>;

/**
 * Builds a wrapper's replacement for processor `inner`: the members it overrides, every other member forwarded
 * to `inner` (absent where `inner` lacks it). `path` is the attention's module path.
 */
export type ProcessorWrapper = (inner: AttnProcessor, path: string, attn: AttentionModule) => Partial<AttnProcessor>;

/**
 * Wraps the processor of every attention below `root`: each becomes a processor whose members are `wrapper`'s
 * overrides where it gives one and `inner`'s otherwise, so a wrapper that observes `call` keeps the inner
 * processor's `reuses` and `reset` (and any member added later). Returns a function that restores the
 * processors as they were.
 *
 * @example
 * // Log every attention's output shape during one forward.
 * const restore = wrapProcessors(unet, (inner, path) => ({
 *   call: (attn, hidden, enc, bias, ctx) => {
 *     const y = inner.call(attn, hidden, enc, bias, ctx);
 *     console.log(path, y.shape);
 *     return y;
 *   },
 * }));
 * try { unet.forward(inputs).dispose(); } finally { restore(); }
 */
export function wrapProcessors(root: Module, wrapper: ProcessorWrapper): () => void {
  const saved = new Map<AttentionModule, AttnProcessor>();
  for (const [path, m] of attentionModules(root)) {
    const inner = m.processor;
    saved.set(m, inner);
    m.processor = delegate(inner, wrapper(inner, path, m));
  }
  return () => {
    for (const [m, p] of saved) m.processor = p;
  };
}

/** `overrides` completed with `inner`'s members (bound to `inner`) for every member it does not override. */
function delegate(inner: AttnProcessor, overrides: Partial<AttnProcessor>): AttnProcessor {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(PROCESSOR_MEMBERS) as (keyof AttnProcessor)[]) {
    const own = overrides[key];
    const theirs = inner[key];
    if (own) out[key] = own;
    else if (typeof theirs === 'function') out[key] = theirs.bind(inner);
  }
  if (typeof out.call !== 'function') throw new Error('wrapProcessors: the wrapped processor has no call()');
  return out as unknown as AttnProcessor;
}

/**
 * Runs `fn` with every attention's processor wrapped so its output (the attention module's output, as a
 * diffusers forward hook sees it) is reported under the module path; the processors are restored after.
 */
export function withRecordedAttention<T>(root: Module, record: (name: string, t: tf.Tensor) => void, fn: () => T): T {
  const restore = wrapProcessors(root, (inner, path) => ({
    call: (attn, hidden, enc, bias, ctx) => {
      const y = inner.call(attn, hidden, enc, bias, ctx);
      record(path, y);
      return y;
    },
  }));
  try {
    return fn();
  } finally {
    restore();
  }
}
