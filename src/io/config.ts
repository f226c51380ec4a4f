/**
 * Reading a model's `config.json` (or any diffusers / transformers config): one reader checks each key's type
 * and bounds and fills the class default, so an unsupported, malformed or hostile file fails before anything
 * is built, with the file, the class and the key named.
 *
 * A config is untrusted input: keys that size loops or allocations (layer, block, channel and head counts,
 * vocabularies, sample sizes) carry a `max`. The limits in {@link LIMITS} are generous enough for every
 * released model the package runs (SDXL, PixArt-α/Σ with T5-XXL, CLIP-bigG) and small enough that a config
 * cannot ask for an absurd model.
 */

/** Upper bounds shared by the model configs (each well above the largest released value, given after it). */
export const LIMITS = {
  /** Transformer layers of a stack: CLIP-bigG 32, T5-XXL 24, PixArt 28. */
  layers: 256,
  /** Resnet or transformer layers inside one UNet / VAE block: SDXL 10. */
  layersPerBlock: 64,
  /** Down (and up) blocks of a UNet or VAE: 4. */
  blocks: 16,
  /** Channel and hidden widths: SDXL 1280 channels, T5-XXL d_model 4096, cross-attention 2048. */
  width: 16384,
  /** Feed-forward inner widths: T5-XXL d_ff 10240, CLIP-bigG 5120. */
  innerWidth: 65536,
  /** Attention heads (and the legacy head counts of attention_head_dim): T5-XXL 64. */
  heads: 256,
  /** Width of one attention head: PixArt 72, T5 64. */
  headDim: 1024,
  /** Vocabulary sizes: CLIP 49408, T5 32128 (mT5 250112). */
  vocab: 262144,
  /** Positions of a text encoder's embedding table: CLIP 77. */
  positions: 8192,
  /** Latent sample sizes of a denoiser (they size position tables): SDXL 128, PixArt-Σ 4K 512. */
  latentSize: 1024,
  /** Pixel sample sizes of a VAE (informative only): SDXL 1024. */
  imageSize: 16384,
  /** Image or latent channels: 4, 8 (PixArt's learned variance), 9 (inpainting). */
  channels: 1024,
  /**
   * Parameters of one model: T5-XXL's encoder, the largest the pipelines use, has 4.8 billion (SDXL's UNet 2.6).
   * Each key above may be in bounds while their products are not (256 layers of width 16384 is 800 billion).
   */
  parameters: 20e9,
} as const;

/** The longest rendering of an offending value an error message embeds. */
const SHOWN_CHARS = 200;

/**
 * Returns `model` when its parameter count is within {@link LIMITS}.parameters; otherwise disposes it and throws a
 * ConfigError naming the file and class. Models are built without weights, so this runs before any allocation.
 */
export function checkParameterCount<M extends { numParameters(): number; dispose(): void }>(model: M, className: string, file?: string): M {
  const n = model.numParameters();
  if (n <= LIMITS.parameters) return model;
  model.dispose();
  const where = file ? `${file} (${className})` : `${className} config`;
  throw new ConfigError(`${where}: the config asks for ${(n / 1e9).toFixed(1)} billion parameters, more than the limit of ${LIMITS.parameters / 1e9} billion `
    + '(the largest model the pipelines use, T5-XXL\'s encoder, has 4.8 billion): check its widths, layer counts and vocabulary size', file, className, null);
}

/** What a key (or a list entry) must hold. */
export type Rule =
  | { type: 'int'; min?: number; max?: number }
  | { type: 'number'; min?: number; max?: number; /** exclusive bounds */ above?: number; below?: number }
  | { type: 'bool' }
  | { type: 'string' }
  | { type: 'oneOf'; values: readonly unknown[] }
  | { type: 'list'; of: Rule; minLength?: number; maxLength?: number }
  | { type: 'either'; of: readonly Rule[] };

/** Rule constructors, so a table reads as `int(1, LIMITS.layers)`. */
export const rule = {
  int: (min?: number, max?: number): Rule => ({ type: 'int', min, max }),
  number: (o: { min?: number; max?: number; above?: number; below?: number } = {}): Rule => ({ type: 'number', ...o }),
  bool: (): Rule => ({ type: 'bool' }),
  string: (): Rule => ({ type: 'string' }),
  oneOf: (values: readonly unknown[]): Rule => ({ type: 'oneOf', values }),
  list: (of: Rule, minLength?: number, maxLength?: number): Rule => ({ type: 'list', of, minLength, maxLength }),
  either: (...of: Rule[]): Rule => ({ type: 'either', of }),
};

/** How a key is read: absent keys take `default` (no `default`: the key is required); null only when nullable. */
export interface KeyOptions {
  default?: unknown;
  nullable?: boolean;
}

/** A config key was missing, of the wrong type, out of bounds or unsupported. */
export class ConfigError extends Error {
  constructor(message: string, readonly file: string | undefined, readonly className: string, readonly key: string | null) {
    super(message);
    this.name = 'ConfigError';
  }

  /** The same error naming `file`, for a config that was checked before its file was known (schedulerFromConfig). */
  inFile(file: string): ConfigError {
    const prefix = `${this.className} config: `;
    if (this.file !== undefined || !this.message.startsWith(prefix)) return this;
    return new ConfigError(`${file} (${this.className}): ${this.message.slice(prefix.length)}`, file, this.className, this.key);
  }
}

/** A short rendering of any value (at most ~{@link SHOWN_CHARS} characters, whatever its size). */
export function showValue(v: unknown): string {
  let budget = SHOWN_CHARS;
  const walk = (x: unknown): string => {
    if (budget <= 0) return '…';
    let s: string;
    if (Array.isArray(x)) {
      const parts: string[] = [];
      for (let i = 0; i < x.length && budget > 0; i++) parts.push(walk(x[i]));
      s = `[${parts.join(',')}${parts.length < x.length ? ',…' : ''}]`;
    } else if (x !== null && typeof x === 'object') {
      const parts: string[] = [];
      for (const [k, val] of Object.entries(x)) {
        if (budget <= 0) { parts.push('…'); break; }
        parts.push(`${JSON.stringify(k.slice(0, SHOWN_CHARS))}:${walk(val)}`);
      }
      s = `{${parts.join(',')}}`;
    } else if (typeof x === 'string') {
      s = JSON.stringify(x.length > SHOWN_CHARS ? `${x.slice(0, SHOWN_CHARS)}…` : x);
    } else {
      // NaN and ±Infinity come from Python-written JSON: show them as such, not as JSON's null.
      s = typeof x === 'number' || typeof x === 'bigint' || x === undefined ? String(x) : JSON.stringify(x) ?? String(x);
    }
    budget -= s.length;
    return s;
  };
  const out = walk(v);
  return out.length > SHOWN_CHARS ? `${out.slice(0, SHOWN_CHARS)}…` : out;
}

const range = (min?: number, max?: number): string =>
  (min !== undefined && max !== undefined ? ` in ${min}…${max}` : min !== undefined ? ` ≥ ${min}` : max !== undefined ? ` ≤ ${max}` : '');

/** The rule in words: "an integer in 1…64", "a list of 1…16 entries, each an integer ≥ 1". */
export function describeRule(r: Rule): string {
  switch (r.type) {
    case 'int': return `an integer${range(r.min, r.max)}`;
    case 'number': {
      const bounds = [range(r.min, r.max).trim()];
      if (r.above !== undefined) bounds.unshift(`> ${r.above}`);
      if (r.below !== undefined) bounds.push(`< ${r.below}`);
      const words = bounds.filter(Boolean).join(' and ');
      return `a number${words ? ` ${words}` : ''}`;
    }
    case 'bool': return 'true or false';
    case 'string': return 'a string';
    case 'oneOf': return `one of ${r.values.map((v) => showValue(v)).join(', ')}`;
    case 'list': {
      const n = r.minLength !== undefined && r.minLength === r.maxLength ? `${r.minLength} `
        : r.minLength !== undefined && r.maxLength !== undefined ? `${r.minLength}…${r.maxLength} `
          : r.minLength !== undefined ? `at least ${r.minLength} ` : r.maxLength !== undefined ? `at most ${r.maxLength} ` : '';
      return `a list of ${n}entries, each ${describeRule(r.of)}`;
    }
    case 'either': return r.of.map(describeRule).join(' or ');
  }
}

interface Violation {
  /** Index path of the offending list entry ([] for the value itself). */
  at: number[];
  value: unknown;
  /** The rule that value breaks. */
  rule: Rule;
}

/** Why `v` breaks `r` (null when it does not); a bad list entry is reported with its index. */
function violation(v: unknown, r: Rule): Violation | null {
  const self = (ok: boolean): Violation | null => (ok ? null : { at: [], value: v, rule: r });
  switch (r.type) {
    case 'int':
      return self(typeof v === 'number' && Number.isInteger(v) && (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max));
    case 'number':
      return self(typeof v === 'number' && Number.isFinite(v) && (r.above === undefined || v > r.above) && (r.below === undefined || v < r.below)
        && (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max));
    case 'bool': return self(typeof v === 'boolean');
    case 'string': return self(typeof v === 'string');
    case 'oneOf': return self(r.values.includes(v));
    case 'either': {
      if (r.of.some((x) => violation(v, x) === null)) return null;
      // A list of the right length with one bad entry: name the entry rather than the whole value.
      for (const x of r.of) {
        const inner = Array.isArray(v) && x.type === 'list' ? violation(v, x) : null;
        if (inner?.at.length) return inner;
      }
      return self(false);
    }
    case 'list': {
      if (!Array.isArray(v) || (r.minLength !== undefined && v.length < r.minLength) || (r.maxLength !== undefined && v.length > r.maxLength)) {
        return self(false);
      }
      for (let i = 0; i < v.length; i++) {
        const bad = violation(v[i], r.of);
        if (bad) return { ...bad, at: [i, ...bad.at] };
      }
      return null;
    }
  }
}

/**
 * Reads one config object for one class. Each accessor returns the checked value (or the default), and
 * throws a {@link ConfigError} naming the file, the class and the key otherwise.
 */
export class ConfigReader {
  private constructor(readonly raw: Readonly<Record<string, unknown>>, readonly className: string, readonly file?: string) {}

  /** Checks that `raw` is a JSON object (not null, an array or a scalar) and returns its reader. */
  static of(raw: unknown, className: string, file?: string): ConfigReader {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      const what = raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw;
      throw new ConfigError(`${ConfigReader.where(className, file)}: the config is ${what}, expected a JSON object of settings`, file, className, null);
    }
    return new ConfigReader(raw as Record<string, unknown>, className, file);
  }

  private static where(cls: string, file?: string): string {
    return file ? `${file} (${cls})` : `${cls} config`;
  }

  /** Whether the config sets `key` (to anything, null included). */
  has(key: string): boolean {
    return this.raw[key] !== undefined;
  }

  /** An error about `key` and its value, for checks that involve several keys. */
  fail(key: string, problem: string, value: unknown = this.raw[key]): ConfigError {
    return new ConfigError(`${ConfigReader.where(this.className, this.file)}: ${key}=${showValue(value)} ${problem}`, this.file, this.className, key);
  }

  /** Reads `key` under `r`: absent → the default (or "missing"), null → null when nullable. */
  get(key: string, r: Rule, o: KeyOptions = {}): unknown {
    const v = this.raw[key];
    if (v === undefined) {
      if (!('default' in o)) {
        throw new ConfigError(`${ConfigReader.where(this.className, this.file)}: required key "${key}" is missing (expected ${describeRule(r)})`, this.file, this.className, key);
      }
      const d = o.default;
      if (!(d === null && o.nullable) && violation(d, r)) {
        throw new ConfigError(`${ConfigReader.where(this.className, this.file)}: ${key} is not set, and its default ${showValue(d)} does not fit the rest `
          + `of the config (expected ${describeRule(r)}): set ${key}`, this.file, this.className, key);
      }
      return d;
    }
    if (v === null && o.nullable) return null;
    this.check(key, v, r);
    return v;
  }

  /** Throws unless `v` (the value of `key`, or one derived from it) satisfies `r`. */
  check(key: string, v: unknown, r: Rule): void {
    const bad = violation(v, r);
    if (!bad) return;
    const entry = bad.at.length ? ` (entry ${bad.at.join('.')})` : '';
    const problem = bad.rule.type === 'oneOf'
      ? `is not supported (supported: ${bad.rule.values.map((x) => showValue(x)).join(', ')})`
      : `is invalid: expected ${describeRule(bad.rule)}`;
    throw this.fail(key, `${entry ? `${entry.trim()} ` : ''}${problem}`, bad.value);
  }

  int(key: string, o: KeyOptions & { min?: number; max?: number; nullable: true }): number | null;
  int(key: string, o?: KeyOptions & { min?: number; max?: number }): number;
  int(key: string, o: KeyOptions & { min?: number; max?: number } = {}): number | null {
    return this.get(key, rule.int(o.min, o.max), o) as number | null;
  }

  number(key: string, o: KeyOptions & { min?: number; max?: number; above?: number; nullable: true }): number | null;
  number(key: string, o?: KeyOptions & { min?: number; max?: number; above?: number }): number;
  number(key: string, o: KeyOptions & { min?: number; max?: number; above?: number } = {}): number | null {
    return this.get(key, rule.number(o), o) as number | null;
  }

  bool(key: string, o: KeyOptions & { nullable: true }): boolean | null;
  bool(key: string, o?: KeyOptions): boolean;
  bool(key: string, o: KeyOptions = {}): boolean | null {
    return this.get(key, rule.bool(), o) as boolean | null;
  }

  string(key: string, o: KeyOptions & { nullable: true }): string | null;
  string(key: string, o?: KeyOptions): string;
  string(key: string, o: KeyOptions = {}): string | null {
    return this.get(key, rule.string(), o) as string | null;
  }

  /** One of `values` (null counts as a value here: list it to accept it). */
  oneOf<T>(key: string, values: readonly T[], o: KeyOptions = {}): T {
    return this.get(key, rule.oneOf(values), { ...o, nullable: false }) as T;
  }

  /** A list whose entries satisfy `of`. */
  list<T>(key: string, of: Rule, o: KeyOptions & { minLength?: number; maxLength?: number } = {}): T[] {
    return this.get(key, rule.list(of, o.minLength, o.maxLength), o) as T[];
  }

  /** One value for every block, or a list of exactly `n` per-block values; returns one entry per block. */
  perBlock<T>(key: string, of: Rule, n: number, o: KeyOptions = {}): T[] {
    const perBlockList = rule.list(of, n, n);
    // A list is always the per-block form (an entry may itself be a list, as transformer_layers_per_block's).
    const v = this.get(key, Array.isArray(this.raw[key] ?? o.default) ? perBlockList : rule.either(of, perBlockList), o);
    return Array.isArray(v) ? (v as T[]) : new Array<T>(n).fill(v as T);
  }
}
