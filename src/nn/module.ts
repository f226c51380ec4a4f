/**
 * The Module tree: named children and parameters keyed by their diffusers/transformers state-dict key.
 *
 * Parameters are plain tf.Tensors (no Variables, so no gradient tape), created when weights are loaded,
 * never inside a tidy scope. Until then a parameter is only a shape, so a full-size model can be built
 * and counted without allocating its weights.
 */
import * as tf from '@tensorflow/tfjs-core';
// Registers x.reshape(), x.transpose()… on tf.Tensor for every module that builds on this one.
import './chained-ops.js';
import { ownedArray, randomNormalHost, toOurLayoutHost } from './host-weights.js';
import { PackedWeight, bytesPerElement, pieceLimit, type WeightDtype } from './packed-weight.js';

/**
 * How a parameter is stored in PyTorch vs here: `linear` weights are [out,in] there and [in,out] here,
 * `conv` weights OIHW there and HWIO here (TF.js convolutions are channels-last).
 */
export type ParamLayout = 'plain' | 'linear' | 'conv';

/**
 * Where an offloaded parameter lives between uses (see nn/offload.ts): its values in JS memory, and the way
 * to create its backend tensor for one use inside a forward.
 */
export interface HostSlot {
  /**
   * Null until loaded. Assigned in our layout; after a forward on wasm has converted the weight to the
   * streamed GEMM layout, the slot may keep that copy instead (`streamed`), so later uploads skip the transpose.
   */
  values: Float32Array | null;
  /** Whether `values` are in the streamed layout of nn/streamed-weights.ts; assigning `values` clears it. */
  readonly streamed: boolean;
  /** Creates the parameter's backend tensor(s) from `values` for the forward now running; the offload scope releases them. */
  materialize(p: Parameter): void;
}

/**
 * Which compact forms the layer owning a parameter reads (nn/packed-weight.ts): packed halves (Linear,
 * Conv2d, Embedding) and row pieces (Embedding tables).
 */
export interface PackOptions {
  halves?: boolean;
  rowPieces?: boolean;
}

export class Parameter {
  /** The float32 tensor of {@link shape}, for a parameter that is not {@link isPacked}. */
  value: tf.Tensor | null = null;
  /** The backend tensors of a parameter that {@link isPacked}. */
  packed: PackedWeight | null = null;
  /** Set while offloaded: loading and {@link Module.initRandom} then fill `host.values`, never the backend. */
  host: HostSlot | null = null;
  /** How the backend holds it; 'float16' only where the owning layer reads halves (set before loading). */
  dtype: WeightDtype = 'float32';
  constructor(readonly shape: number[], readonly layout: ParamLayout = 'plain', readonly packing: PackOptions = {}) {}

  /** The shape the PyTorch state dict stores. */
  get torchShape(): number[] {
    const s = this.shape;
    if (this.layout === 'linear') return [s[1], s[0]];
    if (this.layout === 'conv') return [s[3], s[2], s[0], s[1]];
    return s;
  }

  get size(): number { return this.shape.reduce((a, b) => a * b, 1); }

  /** Bytes the backend holds for it once loaded. */
  get bytes(): number { return this.size * bytesPerElement(this.dtype); }

  /**
   * Whether the backend holds it as a {@link PackedWeight} (`packed`) rather than one float32 tensor
   * (`value`): float16, or a table over the piece size (128 MiB) whose layer reads row pieces.
   */
  get isPacked(): boolean {
    // Once loaded, the form it was loaded in (the piece size may change later, e.g. in tests).
    if (this.packed || this.value) return !!this.packed;
    return this.dtype === 'float16' || (!!this.packing.rowPieces && this.shape.length > 1 && this.bytes > pieceLimit());
  }

  /** The loaded float32 tensor (an offloaded one is created on first use in a forward); throws if never loaded. */
  get t(): tf.Tensor {
    if (this.isPacked) {
      throw new Error(`a parameter of shape [${this.shape}] held as ${this.dtype === 'float16' ? 'packed float16' : 'row pieces'} is read only by the layer that owns it (Linear, Conv2d, Embedding)`);
    }
    if (!this.value && this.host?.values) this.host.materialize(this);
    if (this.value) return this.value;
    throw new Error('parameter used before weights were loaded (call loadStateDict / loadWeights first)');
  }

  /** The loaded {@link PackedWeight} of a parameter that {@link isPacked} (created on first use in a forward when offloaded). */
  get stored(): PackedWeight {
    if (!this.packed && this.host?.values) this.host.materialize(this);
    if (this.packed) return this.packed;
    throw new Error('parameter used before weights were loaded (call loadStateDict / loadWeights first)');
  }

  /** Whether weights were loaded (into the backend, or into JS memory when offloaded). */
  get loaded(): boolean { return this.value !== null || this.packed !== null || !!this.host?.values; }

  /** Sets the loaded float32 tensor, taking ownership; an offloaded parameter copies it to JS memory and disposes it. */
  set(v: tf.Tensor): void {
    if (this.isPacked) throw new Error(`parameter of shape [${this.shape}] is held packed; fill it with assign(values), not a tensor`);
    if (this.host) {
      if (v.dtype !== 'float32') throw new Error(`offloaded parameters hold float32, got ${v.dtype}`);
      this.host.values = new Float32Array(v.dataSync() as Float32Array);
      v.dispose();
      return;
    }
    this.value?.dispose();
    this.value = v;
  }

  /**
   * Loads values in our layout: float32, or IEEE half bits for a float16 parameter (a converted float16
   * folder's bytes). Into JS memory when offloaded, else into the backend in the parameter's form.
   */
  assign(values: Float32Array | Uint16Array): void {
    if (this.host) {
      if (!(values instanceof Float32Array)) throw new Error('offloaded parameters hold float32 values');
      this.host.values = ownedArray(values);
      return;
    }
    this.upload(values);
  }

  /** Creates the backend tensor(s) from values in our layout, replacing any (offload uses it for each forward). */
  upload(values: Float32Array | Uint16Array): void {
    this.releaseBackend();
    if (this.isPacked) this.packed = PackedWeight.fromValues(values, this.shape, this.dtype, this.packing.rowPieces ? pieceLimit() : null);
    else if (values instanceof Float32Array) this.value = tf.tensor(values, this.shape, 'float32');
    else throw new Error('half-precision values can only fill a float16 parameter');
  }

  /** Disposes the backend tensors, keeping any copy in JS memory. */
  releaseBackend(): void {
    this.value?.dispose();
    this.value = null;
    this.packed?.dispose();
    this.packed = null;
  }

  /** Releases the loaded weights, in the backend and in JS memory. */
  release(): void {
    this.releaseBackend();
    if (this.host) this.host.values = null;
  }
}

/** A source of weights in PyTorch layout: what a safetensors file, shards, or a converted folder offer. */
export interface WeightSource {
  keys(): string[];
  /** Shape as stored in the checkpoint. */
  shape(key: string): number[];
  /** Reads a tensor's values as float32. */
  read(key: string): Promise<Float32Array>;
  /**
   * The tensor's stored IEEE half bits, when it is stored as float16 in our layout (a converted
   * `--quantize float16` folder), else null: a float16 parameter then uploads them as they are.
   */
  readHalves?(key: string): Promise<Uint16Array | null>;
  /** Where the weights come from, for error messages. */
  readonly name: string;
  /** Set when the stored tensors are already in our layout (converted TF.js folders). */
  readonly layoutConverted?: boolean;
}

export class StateDictError extends Error {
  constructor(
    readonly source: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: { key: string; expected: number[]; actual: number[] }[],
  ) {
    const lines = [
      ...missing.map((k) => `  missing key: ${k}`),
      ...unexpected.map((k) => `  unexpected key: ${k}`),
      ...mismatched.map((m) => `  shape mismatch: ${m.key} expected [${m.expected}] got [${m.actual}]`),
    ];
    const shown = lines.length > 40 ? [...lines.slice(0, 40), `  … and ${lines.length - 40} more`] : lines;
    super(`${source}: weights do not match the model (${missing.length} missing, ${unexpected.length} unexpected, ${mismatched.length} misshaped):\n${shown.join('\n')}`);
    this.name = 'StateDictError';
  }
}

/** Converts a PyTorch-layout tensor to ours. */
export function toOurLayout(values: Float32Array, torchShape: number[], layout: ParamLayout): tf.Tensor {
  return tf.tidy(() => {
    const t = tf.tensor(values, torchShape, 'float32');
    if (layout === 'linear') return t.transpose([1, 0]);
    if (layout === 'conv') return t.transpose([2, 3, 1, 0]);
    return t;
  });
}

const disposeHooks: (() => void)[] = [];

/**
 * Runs `fn` after every {@link Module.dispose} (a function registered twice runs once). For backends that
 * hold memory beyond live tensors, so that nn/ needs to know none: src/backends/webgpu registers its
 * buffer-pool release.
 */
export function onModuleDispose(fn: () => void): void {
  if (!disposeHooks.includes(fn)) disposeHooks.push(fn);
}

export class Module {
  private readonly children = new Map<string, Module>();
  private readonly params = new Map<string, Parameter>();

  /** Registers a child module under `name` (its path segment) and returns it. */
  protected child<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  /** Registers a parameter (not yet loaded) with its shape in our layout, and the compact forms its layer reads. */
  protected param(name: string, shape: number[], layout: ParamLayout = 'plain', packing: PackOptions = {}): Parameter {
    const p = new Parameter(shape, layout, packing);
    this.params.set(name, p);
    return p;
  }

  /** Every parameter, keyed by its full state-dict key. */
  *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    for (const [n, p] of this.params) yield [prefix + n, p];
    for (const [n, c] of this.children) yield* c.namedParameters(`${prefix}${n}.`);
  }

  /** Every module below (and including) this one, keyed by its module path. */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this.children) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  getChild(name: string): Module | undefined { return this.children.get(name); }

  /**
   * Holds every parameter whose layer reads halves (Linear, Conv2d, Embedding weights) as `dtype` from the
   * next load on (nn/packed-weight.ts); biases and norms stay float32. Call it before loading, after
   * `checkWeightDtype` (backends/kernels.ts) has said the backend reads float16 (loading with `weightDtype`
   * does both).
   */
  setWeightDtype(dtype: WeightDtype): void {
    if (dtype !== 'float32' && dtype !== 'float16') throw new Error(`weightDtype must be 'float32' or 'float16', got ${JSON.stringify(dtype)}`);
    for (const [k, p] of this.namedParameters()) {
      if (!p.packing.halves || p.dtype === dtype) continue;
      if (p.loaded) throw new Error(`the weight dtype must be set before weights are loaded (${k} already is)`);
      if (p.host) throw new Error('float16 weights cannot be offloaded (offload keeps float32 values in JS memory): use one or the other');
      p.dtype = dtype;
    }
  }

  numParameters(): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) n += p.size;
    return n;
  }

  /**
   * The checkpoint as this model reads it. The identity here; a model whose checkpoints name one tensor two
   * ways (T5's tied embeddings) presents them under its own key. {@link loadStateDict} and `tgate convert`
   * both read through it.
   */
  weightSource(src: WeightSource): WeightSource {
    return src;
  }

  /**
   * The strict check {@link loadStateDict} makes before reading anything: every missing key, unexpected key
   * and shape mismatch, reported together in one {@link StateDictError}. `src` is read as this model reads
   * it ({@link weightSource}): pass the raw checkpoint.
   */
  checkStateDict(src: WeightSource): void {
    const s = this.weightSource(src);
    const params = new Map(this.namedParameters());
    const have = new Set(s.keys());
    const missing = [...params.keys()].filter((k) => !have.has(k));
    const unexpected = [...have].filter((k) => !params.has(k));
    const mismatched: { key: string; expected: number[]; actual: number[] }[] = [];
    for (const [k, p] of params) {
      if (!have.has(k)) continue;
      const expected = s.layoutConverted ? p.shape : p.torchShape;
      const actual = s.shape(k);
      if (expected.length !== actual.length || expected.some((d, i) => d !== actual[i])) mismatched.push({ key: k, expected, actual });
    }
    if (missing.length || unexpected.length || mismatched.length) throw new StateDictError(s.name, missing, unexpected, mismatched);
  }

  /**
   * Loads weights from a PyTorch-layout source. Strict ({@link checkStateDict}): nothing is created unless
   * every key and shape matches.
   * Offloaded parameters (nn/offload.ts) are converted to our layout in JS and stay in JS memory: no
   * backend tensor is created for them. Packed parameters (nn/packed-weight.ts) are converted and packed in
   * JS; a float16 one takes the source's half bits as they are when it has them.
   */
  async loadStateDict(raw: WeightSource, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<void> {
    this.checkStateDict(raw);
    const src = this.weightSource(raw);
    const params = new Map(this.namedParameters());
    let done = 0;
    for (const [k, p] of params) {
      const halves = p.dtype === 'float16' && src.layoutConverted ? await src.readHalves?.(k) : null;
      if (halves) p.assign(halves);
      else {
        const values = await src.read(k);
        if (p.host || p.isPacked) p.assign(src.layoutConverted ? values : toOurLayoutHost(values, p.torchShape, p.layout));
        else p.set(src.layoutConverted ? tf.tensor(values, p.shape, 'float32') : toOurLayout(values, p.torchShape, p.layout));
      }
      opts.onProgress?.(++done, params.size);
    }
  }

  /**
   * Fills every parameter with seeded normal values N(0, std²) (benchmarks, shape checks); parameter k (in
   * {@link namedParameters} order) uses seed `seed + k`. Offloaded parameters are drawn in JS memory by
   * {@link randomNormalHost}: deterministic for a seed, but not the values `tf.randomNormal` gives the
   * resident ones, so the same seed gives different weights with and without offload. Packed parameters
   * (float16, row pieces) are drawn in JS memory the same way.
   */
  initRandom(seed = 0, std = 0.02): void {
    let s = seed;
    for (const [, p] of this.namedParameters()) {
      if (p.host || p.isPacked) p.assign(randomNormalHost(p.size, std, s++));
      else p.set(tf.randomNormal(p.shape, 0, std, 'float32', s++));
    }
  }

  /**
   * Releases every parameter's weights (backend tensors and offloaded copies in JS memory), then runs the
   * {@link onModuleDispose} hooks: on WebGPU, `releaseWebgpuBufferPool` frees the buffers TF.js pooled for
   * reuse, which would otherwise stay allocated under whatever model is loaded next.
   */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.release();
    for (const fn of disposeHooks) fn();
  }
}

/** An indexed list of children (`resnets.0`, `resnets.1`, …), as torch.nn.ModuleList. */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.child(String(i), m));
  }
  get length(): number { return this.items.length; }
  at(i: number): M { return this.items[i]; }
}
