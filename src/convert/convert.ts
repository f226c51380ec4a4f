/**
 * diffusers folder → TF.js model folder (`tgate convert`).
 *
 * Streams: one tensor is read, transposed to our layout and encoded straight into the current shard, which
 * is written when full. Peak memory is about the largest tensor (plus its undecoded bytes until collected)
 * and one shard, never a checkpoint. Everything is validated (layout, classes, keys, shapes) before the first
 * byte is written; output goes to `<out>.tmp-<pid>` and is renamed into place only when complete.
 */
import path from 'node:path';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { StateDictError, type Module, type Parameter, type WeightSource } from '../nn/module.js';
import { modelSpecs } from '../models/registry.js';
import { exists, findWeightFiles, readComponentConfig, readJson, type Config } from '../io/diffusers-folder.js';
import { FileSource, openSafetensors } from '../io/node-source.js';
import { SafetensorsWeightSource } from '../io/safetensors-weight-source.js';
import { joinLocation } from '../io/location.js';
import { parseModelIndex } from '../io/model-index.js';
import { atomically, checkOutput } from './output.js';
import {
  STORED_BYTES, ShardPacker, buildModelJson, encodeStored, shardBytesFor, shardFileName, uint8Params,
  type QuantizeMode, type TfjsWeightEntry,
} from '../io/tfjs-format.js';

type ClosableSource = WeightSource & { close(): Promise<void> };

export interface ConvertOptions {
  /** Storage of the weights (default none = float32, bit-exact). */
  quantize?: QuantizeMode;
  /** Shard size in MiB (default 4, as tfjs-converter). */
  shardMb?: number;
  /** Only these pipeline components (others are marked absent in the output model_index.json). */
  components?: string[];
  /** diffusers weight variant to read (`fp16`…). */
  variant?: string;
  /** Replace an existing output folder. */
  force?: boolean;
  /**
   * Where a weight component's tensors come from, instead of its folder's safetensors files (the folder
   * still gives every config): bench/browser-full.ts converts seeded random weights this way. Called with
   * the component's name ('' for a single component) and the model built from its config; the source
   * answers in PyTorch layout and is checked and closed like a file's.
   */
  weightSource?: (component: string, model: Module) => ClosableSource | Promise<ClosableSource>;
}

export interface ConvertProgress {
  phase: 'component' | 'tensor' | 'copy' | 'done';
  component: string;
  componentIndex: number;
  componentCount: number;
  tensor?: string;
  /** float32 bytes of weights processed so far, over all components. */
  bytesDone: number;
  bytesTotal: number;
}

export interface ComponentReport {
  name: string;
  className: string;
  tensors: number;
  parameters: number;
  storedBytes: number;
  shards: number;
}

export interface ConvertReport {
  out: string;
  kind: 'pipeline' | 'component';
  components: ComponentReport[];
  /** Folders copied as they are (tokenizers, scheduler). */
  copied: string[];
}

export type ProgressFn = (p: ConvertProgress) => void;

/**
 * Reads F32 tensors of local files straight into their Float32Array: FileSource hands out a fresh buffer,
 * so the aligned copy of the generic decoder would only double the peak for the largest tensor.
 */
class LeanSafetensorsSource extends SafetensorsWeightSource {
  override async read(key: string): Promise<Float32Array> {
    const f = this.files.find((x) => x.tensors.has(key));
    const info = f?.info(key);
    if (f && info && info.dtype === 'F32' && f.source instanceof FileSource) {
      const bytes = await f.source.read(info.begin, info.end);
      if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    }
    return super.read(key);
  }
}

async function openLean(dir: string, variant?: string): Promise<LeanSafetensorsSource> {
  const files = await findWeightFiles(dir, variant);
  const opened = await Promise.all(files.map((f) => openSafetensors(f)));
  return new LeanSafetensorsSource(opened);
}

/** A weight component, checked and ready to stream. */
interface ModelPlan {
  name: string;
  srcDir: string;
  outSub: string;
  config: Config;
  className: string;
  params: [string, Parameter][];
  source: ClosableSource;
  effective: WeightSource;
}

async function planModel(name: string, srcDir: string, outSub: string, opts: ConvertOptions): Promise<ModelPlan> {
  const config = await readComponentConfig(srcDir);
  const className = String(config._class_name ?? '');
  const label = name ? `component "${name}"` : srcDir;
  if (!className) throw new Error(`${label}: ${path.join(srcDir, 'config.json')} names no _class_name (or architectures)`);
  const spec = modelSpecs.get(className);
  if (!spec) {
    throw new Error(`${label}: model class "${className}" is not supported by tgate-tfjs (supported: ${[...modelSpecs.keys()].join(', ')})` +
      (name ? '; leave it out with --components' : ''));
  }
  let model: Module;
  try {
    model = spec.fromConfig(config, path.join(srcDir, 'config.json'));
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}`);
  }
  const source = opts.weightSource
    ? await opts.weightSource(name, model)
    : await openLean(srcDir, opts.variant).catch((e: Error) => { throw new Error(`${label}: ${e.message}`); });
  try {
    // Read as the model reads it (T5 presents its tied embedding under one key), with the same strict checks.
    try {
      model.checkStateDict(source);
    } catch (e) {
      if (!(e instanceof StateDictError)) throw e;
      throw new StateDictError(`${label} (${className}, ${e.source})`, e.missing, e.unexpected, e.mismatched);
    }
    const effective = model.weightSource(source);
    const params = [...model.namedParameters()];
    return { name, srcDir, outSub, config, className, params, source, effective };
  } catch (e) {
    await source.close();
    throw e;
  }
}

/** Strides, in the PyTorch tensor, of each dimension of our layout (null: same layout). */
function torchStrides(p: Parameter): number[] | null {
  const s = p.shape;
  if (p.layout === 'linear') return [1, s[0]]; // ours [in,out] ← torch [out,in]
  if (p.layout === 'conv') { // ours [kh,kw,in,out] ← torch [out,in,kh,kw]
    const [kh, kw, ci] = s;
    return [kw, 1, kh * kw, ci * kh * kw];
  }
  return null;
}

/** out[j] = values at our-layout flat index start+j, read through `strides` (an odometer over our shape). */
function gather(values: Float32Array, shape: number[], strides: number[], start: number, out: Float32Array): void {
  const r = shape.length;
  const idx = new Array<number>(r);
  let rem = start;
  let src = 0;
  for (let d = r - 1; d >= 0; d--) {
    idx[d] = rem % shape[d];
    rem = Math.floor(rem / shape[d]);
    src += idx[d] * strides[d];
  }
  const last = r - 1;
  const len = shape[last];
  const sl = strides[last];
  let j = 0;
  while (j < out.length) {
    const run = Math.min(len - idx[last], out.length - j);
    for (let t = 0; t < run; t++) out[j++] = values[src + t * sl];
    src += run * sl;
    idx[last] += run;
    if (idx[last] === len) {
      src -= len * sl;
      idx[last] = 0;
      for (let d = last - 1; d >= 0; d--) {
        idx[d]++;
        src += strides[d];
        if (idx[d] < shape[d]) break;
        src -= shape[d] * strides[d];
        idx[d] = 0;
      }
    }
  }
}

/** Streams one tensor (PyTorch layout values) into the packer in our layout; returns its manifest entry. */
async function packTensor(packer: ShardPacker, key: string, p: Parameter, values: Float32Array, mode: QuantizeMode): Promise<TfjsWeightEntry> {
  if (values.length !== p.size) throw new Error(`weight "${key}": ${values.length} values, expected ${p.size}`);
  const bpe = STORED_BYTES[mode];
  const q = mode === 'uint8' ? uint8Params(values) : undefined;
  const strides = torchStrides(p);
  await packer.append(p.size * bpe, (dst, off) => {
    const e0 = off / bpe;
    const n = dst.length / bpe;
    if (!strides) {
      encodeStored(values.subarray(e0, e0 + n), dst, mode, q);
    } else if (mode === 'none') {
      gather(values, p.shape, strides, e0, new Float32Array(dst.buffer, dst.byteOffset, n));
    } else {
      const tmp = new Float32Array(n);
      gather(values, p.shape, strides, e0, tmp);
      encodeStored(tmp, dst, mode, q);
    }
  });
  const entry: TfjsWeightEntry = { name: key, shape: [...p.shape], dtype: 'float32' };
  if (mode === 'float16') entry.quantization = { dtype: 'float16' };
  if (mode === 'uint8') entry.quantization = { dtype: 'uint8', min: q!.min, scale: q!.scale };
  return entry;
}

interface ProgressState { done: number; total: number; index: number; count: number; emit?: ProgressFn }

async function writeModel(plan: ModelPlan, outDir: string, opts: ConvertOptions, st: ProgressState): Promise<ComponentReport> {
  const mode = opts.quantize ?? 'none';
  const dir = path.join(outDir, plan.outSub);
  await mkdir(dir, { recursive: true });
  const total = plan.params.reduce((a, [, p]) => a + p.size * STORED_BYTES[mode], 0);
  const paths: string[] = [];
  const packer = new ShardPacker(shardBytesFor(opts.shardMb ?? 4), total, async (i, n, bytes) => {
    const file = shardFileName(i, n);
    paths.push(file);
    await writeFile(path.join(dir, file), bytes);
  });
  const entries: TfjsWeightEntry[] = [];
  const progress = (phase: ConvertProgress['phase'], tensor?: string): void =>
    st.emit?.({ phase, component: plan.name, componentIndex: st.index, componentCount: st.count, tensor, bytesDone: st.done, bytesTotal: st.total });
  progress('component');
  for (const [key, p] of plan.params) {
    let values: Float32Array;
    try {
      values = await plan.effective.read(key);
    } catch (e) {
      throw new Error(`${plan.name || plan.srcDir}: reading weight "${key}" failed: ${(e as Error).message}`);
    }
    entries.push(await packTensor(packer, key, p, values, mode));
    st.done += p.size * 4;
    progress('tensor', key);
  }
  await packer.finish();
  const json = buildModelJson(entries, paths, {
    version: 1, layout: 'tgate-tfjs', className: plan.className, config: plan.config, quantize: mode, shardSizes: packer.shardSizes,
  });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(plan.config, null, 2));
  // model.json last: its presence marks a complete component.
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
  return {
    name: plan.name, className: plan.className, tensors: entries.length,
    parameters: plan.params.reduce((a, [, p]) => a + p.size, 0), storedBytes: total, shards: paths.length,
  };
}

async function copyTree(src: string, dst: string): Promise<void> {
  await mkdir(dst, { recursive: true });
  for (const e of await readdir(src, { withFileTypes: true })) {
    if (e.isDirectory()) await copyTree(path.join(src, e.name), path.join(dst, e.name));
    else if (e.isFile()) await copyFile(path.join(src, e.name), path.join(dst, e.name));
  }
}

/** Whether `dir` is a diffusers pipeline (model_index.json) or a single component (config.json). */
export async function detectLayout(dir: string): Promise<'pipeline' | 'component'> {
  if (!(await exists(dir))) throw new Error(`input folder ${dir} does not exist`);
  if (await exists(path.join(dir, 'model_index.json'))) return 'pipeline';
  if (await exists(path.join(dir, 'config.json'))) return 'component';
  const names = await readdir(dir).catch(() => [] as string[]);
  throw new Error(`${dir} is not a diffusers folder: no model_index.json (pipeline) or config.json (component) (files: ${names.slice(0, 20).join(', ') || 'none'})`);
}

/** Converts one diffusers component folder into a TF.js model folder `out`. */
export async function convertComponent(src: string, out: string, opts: ConvertOptions = {}, onProgress?: ProgressFn): Promise<ComponentReport> {
  await checkOutput(src, out, !!opts.force);
  const plan = await planModel('', src, '', opts);
  const st: ProgressState = { done: 0, total: plan.params.reduce((a, [, p]) => a + p.size * 4, 0), index: 0, count: 1, emit: onProgress };
  try {
    const rep = await atomically(out, !!opts.force, 'component', (tmp) => writeModel(plan, tmp, opts, st));
    onProgress?.({ phase: 'done', component: '', componentIndex: 0, componentCount: 1, bytesDone: st.done, bytesTotal: st.total });
    return rep;
  } finally {
    await plan.source.close();
  }
}

/**
 * Converts a diffusers pipeline folder (or a single component folder) to a TF.js folder: per weight
 * component `model.json` + shards + `config.json`; tokenizers and scheduler copied; `model_index.json` too.
 */
export async function convertPipeline(src: string, out: string, opts: ConvertOptions = {}, onProgress?: ProgressFn): Promise<ConvertReport> {
  if (opts.quantize && !STORED_BYTES[opts.quantize]) throw new Error(`unknown quantization "${opts.quantize}" (none, float16, uint8)`);
  shardBytesFor(opts.shardMb ?? 4);
  if ((await detectLayout(src)) === 'component') {
    if (opts.components?.length) throw new Error(`${src} is a single component folder; --components applies to pipelines`);
    const c = await convertComponent(src, out, opts, onProgress);
    return { out, kind: 'component', components: [{ ...c, name: path.basename(path.resolve(src)) }], copied: [] };
  }
  await checkOutput(src, out, !!opts.force);
  const indexFile = path.join(src, 'model_index.json');
  const index = await readJson(indexFile);
  // Component names become folder names under the input and the output: parseModelIndex keeps them plain.
  const components = parseModelIndex(index, indexFile).components;
  const listed = [...components].filter(([, v]) => v !== null).map(([k]) => k);
  if (opts.components?.length) {
    const unknown = opts.components.filter((c) => !listed.includes(c));
    if (unknown.length) throw new Error(`--components: ${unknown.join(', ')} not in ${indexFile} (it lists ${listed.join(', ')})`);
  }
  const chosen = opts.components?.length ? listed.filter((c) => opts.components!.includes(c)) : listed;
  const models: ModelPlan[] = [];
  const copies: string[] = [];
  try {
    for (const name of chosen) {
      const dir = joinLocation(src, name, `${indexFile}: component`);
      if (!(await exists(dir))) throw new Error(`component "${name}" is listed in model_index.json (${(index[name] as string[]).join('.')}) but ${dir} does not exist`);
      if (await exists(path.join(dir, 'config.json'))) models.push(await planModel(name, dir, name, opts));
      else copies.push(name);
    }
    const st: ProgressState = {
      done: 0, total: models.reduce((a, m) => a + m.params.reduce((b, [, p]) => b + p.size * 4, 0), 0), index: 0, count: models.length, emit: onProgress,
    };
    return await atomically(out, !!opts.force, 'pipeline', async (tmp) => {
      const reports: ComponentReport[] = [];
      for (const [i, m] of models.entries()) {
        st.index = i;
        reports.push(await writeModel(m, tmp, opts, st));
      }
      for (const name of copies) {
        onProgress?.({ phase: 'copy', component: name, componentIndex: st.index, componentCount: st.count, bytesDone: st.done, bytesTotal: st.total });
        await copyTree(joinLocation(src, name), joinLocation(tmp, name));
      }
      // Components left out are marked absent, as diffusers does for optional ones.
      const outIndex: Record<string, unknown> = { ...index };
      for (const name of listed) if (!chosen.includes(name)) outIndex[name] = [null, null];
      await writeFile(path.join(tmp, 'model_index.json'), JSON.stringify(outIndex, null, 2));
      onProgress?.({ phase: 'done', component: '', componentIndex: st.count, componentCount: st.count, bytesDone: st.done, bytesTotal: st.total });
      return { out, kind: 'pipeline' as const, components: reports, copied: copies };
    });
  } finally {
    await Promise.all(models.map((m) => m.source.close()));
  }
}
