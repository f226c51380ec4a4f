/** attnProcessors() / setAttnProcessor() over any Module tree, keyed `<module path>.processor`. */
import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { Attention } from './attention.js';
import type { AttnProcessor } from './processor.js';

/** Every Attention module below `root`, keyed by its module path. */
export function attentionModules(root: Module): Map<string, Attention> {
  const out = new Map<string, Attention>();
  for (const [path, m] of root.namedModules()) if (m instanceof Attention) out.set(path, m);
  return out;
}

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
 * Runs `fn` with every attention's processor wrapped so its output (the Attention module's output, as a
 * diffusers forward hook sees it) is reported under the module path; the processors are restored after.
 */
export function withRecordedAttention<T>(root: Module, record: (name: string, t: tf.Tensor) => void, fn: () => T): T {
  const saved = new Map<Attention, AttnProcessor>();
  for (const [path, m] of attentionModules(root)) {
    const inner = m.processor;
    saved.set(m, inner);
    m.processor = {
      call: (attn, hidden, enc, bias, ctx) => {
        const y = inner.call(attn, hidden, enc, bias, ctx);
        record(path, y);
        return y;
      },
      reset: inner.reset ? () => inner.reset!() : undefined,
    };
  }
  try {
    return fn();
  } finally {
    for (const [m, p] of saved) m.processor = p;
  }
}
