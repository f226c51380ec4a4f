/**
 * Weight offload: parameters live as Float32Arrays in JS memory, outside the backend, and are created in the
 * backend only while a forward that uses them runs. This is what lets a model larger than the wasm heap
 * (about 3.9 GiB, where XNNPACK also keeps a packed copy of every weight it has seen) run there: SD-1.5's
 * 3.4 GB UNet, SDXL's 9.6 GiB one.
 *
 * The tree is cut into "units": the largest subtrees with a `forward` whose weights fit `unitBytes` (one
 * UNet down block, one transformer block…). Every parameter inside a unit is offloaded; parameters owned by
 * modules above every unit stay resident. The `forward` of each unit, and of each module above the units,
 * becomes a scope: an offloaded parameter read inside it is uploaded on first use and disposed when that
 * forward returns or throws. So weights are uploaded unit by unit, a weight the forward skips (a TGATE-cached
 * attention) is not uploaded at all, and a parent that reads a child's weight directly (T5's position bias,
 * CLIP's position table) still works. Forwards must be synchronous, as every model's here is.
 *
 * Plan the offload on a model built from its config, before loading: `loadStateDict` and `initRandom` then
 * write offloaded parameters straight into JS memory, and the backend never holds more than the resident
 * weights plus one unit. An already-loaded model can be offloaded too (its weights are copied out).
 *
 * The price is one host→backend copy of every used weight per forward. On wasm, large Linear/Conv2d weights
 * are converted to the streamed GEMM layout on first use (nn/streamed-weights.ts); JS memory then keeps
 * the converted copy in place of the loaded one, so the transpose is paid once, not every forward.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { HostSlot, Module, Parameter } from './module.js';
import { isStreamed, streamedFromValues, weightInOurLayout } from './streamed-weights.js';

export interface OffloadOptions {
  /** Largest unit, in bytes of fp32 weights; bigger subtrees are split into their children. Default 512 MiB. */
  unitBytes?: number;
}

export interface OffloadHandle {
  /** Module paths whose parameters live in JS memory, uploaded while their forward runs. */
  readonly units: string[];
  /** Bytes of weights kept in JS memory (once loaded). */
  readonly hostBytes: number;
  /** Bytes of weights left resident in the backend (parameters owned by modules above every unit). */
  readonly residentBytes: number;
  /** Seconds spent creating backend tensors from JS memory, and bytes uploaded, since offloading. */
  readonly stats: { uploadSeconds: number; uploadBytes: number };
  /** Uploads every loaded offloaded weight to the backend for good and restores the original forward methods. */
  restore(): void;
}

/** An offloaded parameter's values in JS memory; see {@link HostSlot}. */
class OffloadSlot implements HostSlot {
  #values: Float32Array | null = null;
  #streamed = false;
  constructor(private readonly onUpload: (p: Parameter, seconds: number) => void) {}

  get values(): Float32Array | null { return this.#values; }
  set values(v: Float32Array | null) {
    this.#values = v;
    this.#streamed = false;
  }
  get streamed(): boolean { return this.#streamed; }

  /** Creates the parameter's backend tensor(s) from the values, in whichever layout they are held. */
  upload(p: Parameter): void {
    if (this.#streamed) p.value = streamedFromValues(p, this.#values!);
    else p.upload(this.#values!);
  }

  materialize(p: Parameter): void {
    const scope = scopes[scopes.length - 1];
    if (!scope) throw new Error('an offloaded parameter was used outside any module forward (offloaded weights exist only while a forward runs)');
    const t0 = performance.now();
    this.upload(p);
    // Kept: created inside the caller's tidy, but the scope, not the tidy, decides when they go.
    if (p.value) tf.keep(p.value);
    p.packed?.pieces.forEach((t) => tf.keep(t));
    this.onUpload(p, (performance.now() - t0) / 1000);
    scope.push(p);
  }

  /** Swaps in the streamed copy when this forward converted the weight (one read of it, once per weight). */
  keepConverted(p: Parameter): void {
    if (this.#streamed || !p.value || !isStreamed(p.value)) return;
    this.#values = new Float32Array(p.value.dataSync() as Float32Array);
    this.#streamed = true;
  }
}

type Forward = (...args: unknown[]) => unknown;
type WithForward = { forward?: Forward };

export const DEFAULT_UNIT_BYTES = 512 * 1024 ** 2;

/** Parameters uploaded in each running forward scope, innermost last. */
const scopes: Parameter[][] = [];
const handles = new WeakMap<Module, OffloadHandle>();

/** The handle of an offloaded model (e.g. one loaded with `offload: true`), for its units and upload stats. */
export function offloadHandle(root: Module): OffloadHandle | undefined {
  return handles.get(root);
}

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
 * Offloads the weights of `root` (see the module comment): plans units from parameter shapes, moves any
 * already-loaded unit weights to JS memory, and wraps forwards so weights exist in the backend only while
 * used. Load or `initRandom` afterwards to build the weights directly in JS memory. Only float32 weights.
 */
export function offloadWeights(root: Module, opts: OffloadOptions = {}): OffloadHandle {
  const limit = opts.unitBytes ?? DEFAULT_UNIT_BYTES;
  if (!(limit > 0)) throw new Error(`offload unitBytes must be a positive number, got ${limit}`);
  if (handles.has(root) || [...root.namedParameters()].some(([, p]) => p.host)) throw new Error('this model is already offloaded');
  const offloaded: Parameter[] = [];
  const wrapped: { m: Module; original: Forward; own: boolean }[] = [];
  const units: string[] = [];
  let resident = 0;
  const stats = { uploadSeconds: 0, uploadBytes: 0 };

  const slot = (): OffloadSlot => new OffloadSlot((p, seconds) => {
    stats.uploadSeconds += seconds;
    stats.uploadBytes += p.size * 4;
  });

  const toHost = (p: Parameter): void => {
    const s = slot();
    if (p.dtype === 'float16') throw new Error('float16 weights cannot be offloaded (offload keeps float32 values in JS memory; use one or the other)');
    if (p.packed) throw new Error('a model holding a table in row pieces can be offloaded only before its weights are loaded');
    if (p.value) {
      if (p.value.dtype !== 'float32') throw new Error(`offload supports float32 parameters, got ${p.value.dtype}`);
      // A weight that has run on wasm may be held in the streamed GEMM layout; JS memory keeps ours.
      const ours = weightInOurLayout(p);
      s.values = new Float32Array(ours.dataSync() as Float32Array);
      ours.dispose();
      p.value.dispose();
      p.value = null;
    }
    p.host = s;
    offloaded.push(p);
  };

  const scoped = (m: Module): void => {
    const original = (m as WithForward).forward!;
    wrapped.push({ m, original, own: Object.prototype.hasOwnProperty.call(m, 'forward') });
    (m as WithForward).forward = function (this: Module, ...args: unknown[]) {
      const mine: Parameter[] = [];
      scopes.push(mine);
      try {
        return original.apply(this, args);
      } finally {
        scopes.splice(scopes.lastIndexOf(mine), 1);
        for (const p of mine) {
          (p.host as OffloadSlot | null)?.keepConverted(p);
          p.releaseBackend();
        }
      }
    };
  };

  const visit = (m: Module, path: string): void => {
    const bytes = m.numParameters() * 4;
    if (!bytes) return;
    const hasForward = typeof (m as WithForward).forward === 'function';
    if (path && bytes <= limit && hasForward) {
      for (const [, p] of m.namedParameters()) toHost(p);
      units.push(path);
      scoped(m);
      return;
    }
    if (hasForward) scoped(m);
    for (const p of ownParams(m)) resident += p.size * 4;
    for (const [name, c] of directChildren(m)) visit(c, path ? `${path}.${name}` : name);
  };
  visit(root, '');

  const handle: OffloadHandle = {
    units, hostBytes: offloaded.reduce((s, p) => s + p.size * 4, 0), residentBytes: resident, stats,
    restore(): void {
      for (const { m, original, own } of wrapped) {
        if (own) (m as WithForward).forward = original;
        else delete (m as WithForward).forward;
      }
      for (const p of offloaded) {
        const s = p.host as OffloadSlot | null;
        p.host = null;
        if (s?.values) s.upload(p);
      }
      offloaded.length = 0;
      wrapped.length = 0;
      handles.delete(root);
    },
  };
  handles.set(root, handle);
  return handle;
}
