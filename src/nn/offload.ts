/**
 * Weight offload: parameters live as Float32Arrays in JS memory, outside the backend, and each "unit" (a
 * subtree small enough to fit, e.g. one UNet down block or one transformer block) gets its parameters
 * uploaded right before its forward runs and disposed right after. This is what lets a 3.4 GB SD-1.5 UNet
 * run on wasm, whose heap ends near 3.9 GiB and whose XNNPACK kernels keep a packed copy of every weight
 * they have seen (so resident weights cost about twice their size there).
 *
 * The price is one host→backend copy (and, on wasm, one XNNPACK repack) of every weight per forward.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module, Parameter } from './module.js';

export interface OffloadOptions {
  /** Largest unit, in bytes of fp32 weights; bigger subtrees are split into their children. Default 512 MiB. */
  unitBytes?: number;
}

export interface OffloadHandle {
  /** Module paths whose forward uploads and releases its weights. */
  readonly units: string[];
  /** Bytes of weights kept in JS memory. */
  readonly hostBytes: number;
  /** Bytes of weights left resident in the backend (parameters owned by modules above every unit). */
  readonly residentBytes: number;
  /** Seconds spent creating backend tensors from host memory, and bytes uploaded, since offloading. */
  readonly stats: { uploadSeconds: number; uploadBytes: number };
  /** Uploads every weight back to the backend and restores the original forward methods. */
  restore(): void;
}

type Forward = (...args: unknown[]) => unknown;

function directChildren(m: Module): [string, Module][] {
  const out: [string, Module][] = [];
  for (const [p, c] of m.namedModules()) if (p && !p.includes('.')) out.push([p, c]);
  return out;
}

function ownParams(m: Module): Parameter[] {
  const out: Parameter[] = [];
  for (const [k, p] of m.namedParameters()) if (!k.includes('.')) out.push(p);
  return out;
}

/**
 * Moves the loaded weights of `root` to JS memory and wraps the forward of each unit so that its
 * parameters exist in the backend only while it runs. Every parameter must be loaded first.
 */
export function offloadWeights(root: Module, opts: OffloadOptions = {}): OffloadHandle {
  const limit = opts.unitBytes ?? 512 * 1024 ** 2;
  const host = new Map<Parameter, Float32Array>();
  const wrapped: [Module, Forward][] = [];
  const units: string[] = [];
  let resident = 0;
  const stats = { uploadSeconds: 0, uploadBytes: 0 };

  const toHost = (p: Parameter): void => {
    const t = p.t;
    if (t.dtype !== 'float32') throw new Error(`offload supports float32 parameters, got ${t.dtype}`);
    host.set(p, new Float32Array(t.dataSync() as Float32Array));
    t.dispose();
    p.value = null;
  };

  const visit = (m: Module, path: string): void => {
    const bytes = m.numParameters() * 4;
    const fwd = (m as unknown as { forward?: Forward }).forward;
    if (path && bytes <= limit && typeof fwd === 'function') {
      const params = [...m.namedParameters()].map(([, p]) => p);
      for (const p of params) toHost(p);
      const original = fwd;
      wrapped.push([m, original]);
      units.push(path);
      (m as unknown as { forward: Forward }).forward = function (this: Module, ...args: unknown[]) {
        const t0 = performance.now();
        for (const p of params) {
          p.value = tf.tensor(host.get(p)!, p.shape, 'float32');
          stats.uploadBytes += p.size * 4;
        }
        stats.uploadSeconds += (performance.now() - t0) / 1000;
        try {
          return original.apply(this, args);
        } finally {
          for (const p of params) { p.value?.dispose(); p.value = null; }
        }
      };
      return;
    }
    for (const p of ownParams(m)) resident += p.size * 4;
    for (const [name, c] of directChildren(m)) visit(c, path ? `${path}.${name}` : name);
  };
  visit(root, '');

  let hostBytes = 0;
  for (const v of host.values()) hostBytes += v.byteLength;
  return {
    units, hostBytes, residentBytes: resident, stats,
    restore(): void {
      for (const [m, f] of wrapped) (m as unknown as { forward: Forward }).forward = f;
      for (const [p, v] of host) p.set(tf.tensor(v, p.shape, 'float32'));
      host.clear();
      wrapped.length = 0;
    },
  };
}
