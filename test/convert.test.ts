/**
 * `tgate convert`: diffusers folders → TF.js folders and back. Loading a converted folder must give the
 * same float32 weights (bit-identical with quantize none) as the diffusers folder converted to our layout.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, mkdir, readFile, readdir, rm, stat, writeFile, copyFile, open } from 'node:fs/promises';
import { fixture } from './support/helpers.js';
import { convertPipeline, convertComponent } from '../src/convert/convert.js';
import { modelFromConfig } from '../src/models/registry.js';
import { openComponentWeights, readComponentConfig } from '../src/io/diffusers-folder.js';
import type { Parameter } from '../src/nn/module.js';
import { openWeights } from '../src/io/component-source.js';
import { loadModel } from '../src/models/load.js';
import { jest } from '@jest/globals';
import yargs from 'yargs';
import { verifyConversion } from '../src/convert/verify.js';
import { convertCommand } from '../src/convert/cli.js';
import { openSafetensors } from '../src/io/node-source.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { TfjsWeightSource, f32ToF16Bits, type TfjsModelJson } from '../src/io/tfjs-format.js';

let work: string;
beforeAll(async () => { work = await mkdtemp(path.join(os.tmpdir(), 'tgate-convert-')); });
afterAll(async () => { await rm(work, { recursive: true, force: true }); });

const PIPELINES = ['sd15_tiny', 'sdxl_tiny', 'pixart_tiny'];
const MODELS = ['sd21_tiny_unet', 'pixart_tiny_noac', 'sd15_tiny_unet_fp16'];

/** Every parameter of the component, as our layout float32, read from the diffusers folder. */
async function reference(dir: string): Promise<Map<string, { p: Parameter; values: Float32Array }>> {
  const cfg = await readComponentConfig(dir);
  const model = modelFromConfig(cfg);
  const src = await openComponentWeights(dir);
  // Load through the model (handles tied keys), then read back every parameter.
  await model.loadStateDict(src);
  await src.close();
  const out = new Map<string, { p: Parameter; values: Float32Array }>();
  for (const [k, p] of model.namedParameters()) out.set(k, { p, values: p.t.dataSync() as Float32Array });
  model.dispose();
  return out;
}

/** Compares a converted component to its diffusers folder with a per-weight check; returns the worst error. */
async function compare(srcDir: string, outDir: string, check: (got: Float32Array, ref: Float32Array, key: string, q: TfjsModelJson['weightsManifest'][0]['weights'][0]) => number): Promise<number> {
  const ref = await reference(srcDir);
  const conv = await openWeights(outDir) as TfjsWeightSource;
  expect(conv).toBeInstanceOf(TfjsWeightSource);
  expect(new Set(conv.keys())).toEqual(new Set(ref.keys()));
  const entries = new Map(conv.modelJson.weightsManifest[0].weights.map((w) => [w.name, w]));
  let worst = 0;
  for (const [k, { p, values }] of ref) {
    expect(conv.shape(k)).toEqual(p.shape);
    worst = Math.max(worst, check(await conv.read(k), values, k, entries.get(k)!));
  }
  await conv.close();
  return worst;
}

const bitIdentical = (got: Float32Array, ref: Float32Array, key: string): number => {
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) throw new Error(`${key}[${i}]: ${got[i]} != ${ref[i]}`);
  return 0;
};

/** float16: |err| ≤ 1e-3·|w| for normal halves; below 2^-14 (subnormal halves) the step is 2^-24, so + 2^-25. */
const f16Check = (got: Float32Array, ref: Float32Array, key: string): number => {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    if (err > 1e-3 * Math.abs(ref[i]) + 2 ** -25) throw new Error(`${key}[${i}]: ${got[i]} vs ${ref[i]}`);
    if (Math.abs(ref[i]) >= 2 ** -14) worst = Math.max(worst, err / Math.abs(ref[i]));
  }
  return worst;
};

/**
 * uint8 (documented bound): per tensor, min/max of the weights and scale = (max − min)/255; each weight's
 * error is ≤ scale/2 + 2^-23·max(|min|, |max|) (the last term: the float32 rounding of q·scale + min).
 */
const u8Check = (got: Float32Array, ref: Float32Array, key: string, e: { quantization?: { min?: number; scale?: number } }): number => {
  const { min = 0, scale = 1 } = e.quantization!;
  const max = min + 255 * scale;
  const bound = scale / 2 + 2 ** -23 * Math.max(Math.abs(min), Math.abs(max));
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    if (err > bound) throw new Error(`${key}[${i}]: ${got[i]} vs ${ref[i]} (bound ${bound})`);
    worst = Math.max(worst, err / (bound || 1));
  }
  return worst;
};

describe('convert fixture pipelines', () => {
  for (const name of PIPELINES) {
    test(`${name}: quantize none round-trips bit-identically`, async () => {
      const src = fixture('pipelines', name);
      const out = path.join(work, `${name}-none`);
      const events: string[] = [];
      const rep = await convertPipeline(src, out, { shardMb: 0.5 }, (p) => { if (p.phase !== 'tensor') events.push(p.phase); });
      expect(events[events.length - 1]).toBe('done');
      const index = JSON.parse(await readFile(path.join(src, 'model_index.json'), 'utf8')) as Record<string, unknown>;
      expect(JSON.parse(await readFile(path.join(out, 'model_index.json'), 'utf8'))).toEqual(index);
      for (const c of rep.components) {
        expect(await compare(path.join(src, c.name), path.join(out, c.name), bitIdentical)).toBe(0);
        // config travels, as config.json and inside model.json
        expect(JSON.parse(await readFile(path.join(out, c.name, 'config.json'), 'utf8'))).toEqual(await readComponentConfig(path.join(src, c.name)));
      }
      for (const c of rep.copied) {
        for (const f of await readdir(path.join(src, c))) {
          expect(await readFile(path.join(out, c, f))).toEqual(await readFile(path.join(src, c, f)));
        }
      }
      expect(rep.copied).toEqual(expect.arrayContaining(['scheduler', 'tokenizer']));
      expect((await readdir(work)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    });
  }

  test('sd15_tiny: float16 within 1e-3 relative per weight, uint8 within the documented bound', async () => {
    const src = fixture('pipelines', 'sd15_tiny');
    for (const [mode, check] of [['float16', f16Check], ['uint8', u8Check]] as const) {
      const out = path.join(work, `sd15-${mode}`);
      const rep = await convertPipeline(src, out, { quantize: mode });
      for (const c of rep.components) {
        const worst = await compare(path.join(src, c.name), path.join(out, c.name), check);
        console.log(`${mode} ${c.name}: worst ${mode === 'float16' ? 'relative error' : 'error / bound'} ${worst.toExponential(3)}`);
        const m = JSON.parse(await readFile(path.join(out, c.name, 'model.json'), 'utf8')) as TfjsModelJson;
        expect(m.weightsManifest[0].weights.every((w) => w.quantization?.dtype === mode)).toBe(true);
      }
    }
  });

  test('float16 rounding is IEEE round-to-nearest-even', () => {
    const f = (v: number): number => f32ToF16Bits(v);
    expect(f(1)).toBe(0x3c00);
    expect(f(-2)).toBe(0xc000);
    expect(f(65504)).toBe(0x7bff);
    expect(f(65520)).toBe(0x7c00);
    expect(f(2 ** -24)).toBe(1);
    expect(f(2 ** -25)).toBe(0); // tie → even (0)
    expect(f(1.5 * 2 ** -25)).toBe(1);
    expect(f(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f(NaN) & 0x7c00).toBe(0x7c00);
  });
});

describe('convert single component folders', () => {
  for (const name of MODELS) {
    test(`${name}: round-trips bit-identically`, async () => {
      const src = fixture('models', name);
      const out = path.join(work, `model-${name}`);
      const rep = await convertPipeline(src, out, {});
      expect(rep.kind).toBe('component');
      expect(await compare(src, out, bitIdentical)).toBe(0);
    });
  }

  test('fp16 variant converted to float16 is exact', async () => {
    const src = fixture('models', 'sd15_tiny_unet_fp16');
    const out = path.join(work, 'fp16-to-f16');
    await convertComponent(src, out, { quantize: 'float16', variant: 'fp16' });
    expect(await compare(src, out, bitIdentical)).toBe(0);
  });

  test('a tiny --shard-mb makes tensors span shards and they load back correctly', async () => {
    const src = fixture('models', 'pixart_tiny_noac');
    const out = path.join(work, 'tiny-shards');
    const rep = await convertComponent(src, out, { shardMb: 0.01 });
    const m = JSON.parse(await readFile(path.join(out, 'model.json'), 'utf8')) as TfjsModelJson;
    const shardBytes = Math.floor(0.01 * 1024 * 1024 / 4) * 4;
    expect(rep.shards).toBe(Math.ceil(rep.storedBytes / shardBytes));
    expect(m.weightsManifest[0].paths.length).toBe(rep.shards);
    // at least one tensor crosses a boundary
    let off = 0;
    let spanning = 0;
    for (const w of m.weightsManifest[0].weights) {
      const len = 4 * w.shape.reduce((a, b) => a * b, 1);
      if (Math.floor(off / shardBytes) !== Math.floor((off + len - 1) / shardBytes)) spanning++;
      off += len;
    }
    expect(spanning).toBeGreaterThan(3);
    expect(await compare(src, out, bitIdentical)).toBe(0);
    // the model loads from it through the generic loader
    const model = await loadModel(out);
    expect(model.numParameters()).toBe(rep.parameters);
    model.dispose();
  });

  test('loading over fetch (URL) reads shards whole, with progress, and gives the same weights', async () => {
    const src = fixture('models', 'pixart_tiny_noac');
    const out = path.join(work, 'fetch-shards');
    await convertComponent(src, out, { shardMb: 0.02 });
    const fetched: string[] = [];
    const fakeFetch = (async (url: string | URL) => {
      const u = String(url);
      fetched.push(u);
      const file = path.join(out, u.replace('https://example.test/m/', ''));
      try {
        return new Response(await readFile(file));
      } catch {
        return new Response('missing', { status: 404 });
      }
    }) as typeof fetch;
    const progress: number[] = [];
    const conv = await openWeights('https://example.test/m', { fetch: fakeFetch, onProgress: (p) => progress.push(p.loadedBytes) });
    const local = await openWeights(out);
    for (const k of local.keys()) expect(bitIdentical(await conv.read(k), await local.read(k), k)).toBe(0);
    const m = JSON.parse(await readFile(path.join(out, 'model.json'), 'utf8')) as TfjsModelJson;
    const shardCount = m.weightsManifest[0].paths.length;
    // every shard fetched exactly once (reads are in stream order), model.json once
    expect(fetched.length).toBe(shardCount + 1);
    const total = m.userDefinedMetadata!.tgate!.shardSizes.reduce((a, b) => a + b, 0);
    expect(progress[progress.length - 1]).toBe(total);
    await conv.close();
    await local.close();
  });
});

describe('sources', () => {
  test('a sharded bf16 checkpoint converts to what loading it gives', async () => {
    const srcDir = fixture('models', 'pixart_tiny_noac');
    const dir = path.join(work, 'sharded-bf16');
    await mkdir(dir, { recursive: true });
    await copyFile(path.join(srcDir, 'config.json'), path.join(dir, 'config.json'));
    const f = await openSafetensors(path.join(srcDir, 'diffusion_pytorch_model.safetensors'));
    const keys = f.keys();
    const parts: Record<string, { values: Uint8Array; shape: number[]; dtype: 'BF16' }>[] = [{}, {}];
    const weightMap: Record<string, string> = {};
    for (const [i, k] of keys.entries()) {
      const { values, shape } = await f.readValues(k);
      const u32 = new Uint32Array((values as Float32Array).slice().buffer);
      const bf = new Uint16Array(u32.length);
      for (let j = 0; j < u32.length; j++) bf[j] = u32[j] >>> 16;
      parts[i % 2][k] = { values: new Uint8Array(bf.buffer), shape, dtype: 'BF16' };
      weightMap[k] = `diffusion_pytorch_model-0000${(i % 2) + 1}-of-00002.safetensors`;
    }
    await f.close();
    for (const i of [0, 1]) await writeFile(path.join(dir, `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`), encodeSafetensors(parts[i]));
    await writeFile(path.join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const out = path.join(work, 'sharded-bf16-out');
    await convertPipeline(dir, out, { shardMb: 0.03 });
    expect(await compare(dir, out, bitIdentical)).toBe(0);
  });

  test('weightSource: a folder of configs alone converts the weights a source gives, checked like a file\'s', async () => {
    const src = fixture('pipelines', 'sd15_tiny');
    const skeleton = path.join(work, 'configs-only');
    await mkdir(skeleton);
    for (const e of await readdir(src, { withFileTypes: true })) {
      if (!e.isDirectory()) { await copyFile(path.join(src, e.name), path.join(skeleton, e.name)); continue; }
      await mkdir(path.join(skeleton, e.name));
      for (const f of await readdir(path.join(src, e.name))) {
        if (!f.endsWith('.safetensors')) await copyFile(path.join(src, e.name, f), path.join(skeleton, e.name, f));
      }
    }
    const opened: string[] = [];
    const closed: string[] = [];
    const weightSource = async (name: string) => {
      opened.push(name);
      const s = await openComponentWeights(path.join(src, name));
      return Object.assign(Object.create(s) as typeof s, { close: async () => { closed.push(name); await s.close(); } });
    };
    const out = path.join(work, 'configs-only-out');
    const rep = await convertPipeline(skeleton, out, { weightSource });
    expect(rep.components.map((c) => c.name).sort()).toEqual(['text_encoder', 'unet', 'vae']);
    expect(closed.sort()).toEqual(opened.sort());
    for (const c of rep.components) expect(await compare(path.join(src, c.name), path.join(out, c.name), bitIdentical)).toBe(0);
    // A source without one of the model's tensors is refused before anything is written, naming the component.
    const missing = async (name: string) => {
      const s = await openComponentWeights(path.join(src, name));
      const keys = s.keys().slice(1);
      return Object.assign(Object.create(s) as typeof s, { keys: () => keys });
    };
    await expect(convertPipeline(skeleton, path.join(work, 'configs-only-bad'), { weightSource: missing })).rejects.toThrow(/component "text_encoder" \(CLIPTextModel, .*\).*missing key/s);
    await expect(stat(path.join(work, 'configs-only-bad'))).rejects.toThrow(/ENOENT/);
  });

  test('the Cache API keeps fetched shards when asked', async () => {
    const out = path.join(work, 'cache-src');
    await convertComponent(fixture('models', 'pixart_tiny_noac'), out, { shardMb: 0.05 });
    const store = new Map<string, Uint8Array>();
    const g = globalThis as { caches?: unknown };
    g.caches = {
      open: async () => ({
        match: async (u: string) => (store.has(u) ? new Response(store.get(u)! as Uint8Array<ArrayBuffer>) : undefined),
        put: async (u: string, r: Response) => { store.set(u, new Uint8Array(await r.arrayBuffer())); },
      }),
    };
    const fetched: string[] = [];
    const fakeFetch = (async (url: string | URL) => {
      fetched.push(String(url));
      return new Response(await readFile(path.join(out, String(url).replace('https://cdn.test/x/', ''))));
    }) as typeof fetch;
    try {
      const readAll = async (): Promise<number> => {
        const s = await openWeights('https://cdn.test/x/', { fetch: fakeFetch, cache: true });
        let n = 0;
        for (const k of s.keys()) n += (await s.read(k)).length;
        await s.close();
        return n;
      };
      const n1 = await readAll();
      const shardFetches = fetched.filter((u) => u.endsWith('.bin')).length;
      expect(shardFetches).toBeGreaterThan(1);
      expect(store.size).toBe(shardFetches);
      fetched.length = 0;
      expect(await readAll()).toBe(n1);
      expect(fetched.filter((u) => u.endsWith('.bin'))).toEqual([]);
    } finally {
      delete g.caches;
    }
  });
});

describe('--verify and the CLI command', () => {
  test('verify reports 0 for quantize none and a small error for float16', async () => {
    const src = fixture('pipelines', 'sd15_tiny');
    await convertPipeline(src, path.join(work, 'v-sd15-none'), {});
    await convertPipeline(src, path.join(work, 'v-sd15-f16'), { quantize: 'float16' });
    const none = await verifyConversion(src, path.join(work, 'v-sd15-none'));
    const f16 = await verifyConversion(src, path.join(work, 'v-sd15-f16'));
    for (const r of [...none, ...f16]) {
      console.log(`verify ${r.component} ${r.className}: ${r.skipped ?? r.relError!.toExponential(3)}`);
      expect(r.skipped).toBeUndefined();
    }
    expect(none.map((r) => r.component).sort()).toEqual(['text_encoder', 'unet', 'vae']);
    for (const r of none) expect(r.relError).toBe(0);
    for (const r of f16) expect(r.relError).toBeLessThan(1e-2);
  });

  test('verify covers PixArt and T5', async () => {
    await convertPipeline(fixture('pipelines', 'pixart_tiny'), path.join(work, 'v-pixart'), {});
    const res = await verifyConversion(fixture('pipelines', 'pixart_tiny'), path.join(work, 'v-pixart'));
    expect(res.map((r) => r.className).sort()).toEqual(['AutoencoderKL', 'PixArtTransformer2DModel', 'T5EncoderModel']);
    for (const r of res) expect(r.relError).toBe(0);
  });

  test('tgate convert command: options, progress on stderr, summary and --verify', async () => {
    const out = path.join(work, 'cli-out');
    const logs: string[] = [];
    const errs: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { logs.push(a.join(' ')); });
    const write = jest.spyOn(process.stderr, 'write').mockImplementation(((s: string) => { errs.push(String(s)); return true; }) as never);
    try {
      await yargs([]).command(convertCommand).strict().fail((m, e) => { throw e ?? new Error(m); })
        .parseAsync(['convert', fixture('pipelines', 'sdxl_tiny'), out, '--quantize', 'float16', '--shard-mb', '0.25', '--components', 'unet,text_encoder_2', '--verify']);
    } finally {
      log.mockRestore();
      write.mockRestore();
    }
    expect(errs.join('')).toMatch(/done/);
    expect(logs.join('\n')).toMatch(/unet +UNet2DConditionModel/);
    expect(logs.join('\n')).toMatch(/text_encoder_2 +CLIPTextModelWithProjection +relative L2 error/);
    const idx = JSON.parse(await readFile(path.join(out, 'model_index.json'), 'utf8'));
    expect(idx.vae).toEqual([null, null]);
    expect(idx.unet).toEqual(['diffusers', 'UNet2DConditionModel']);
    expect((await readdir(out)).sort()).toEqual(['model_index.json', 'text_encoder_2', 'tgate-convert.json', 'unet']);
  });
});

describe('bad input', () => {
  const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);
  const noLeftovers = async (out: string): Promise<void> => {
    expect(await exists(out)).toBe(false);
    expect((await readdir(path.dirname(out))).filter((f) => f.startsWith(path.basename(out) + '.tmp-'))).toEqual([]);
  };

  test('a folder that is not a diffusers layout', async () => {
    const dir = path.join(work, 'not-diffusers');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'readme.txt'), 'hi');
    await expect(convertPipeline(dir, path.join(work, 'o1'))).rejects.toThrow(/not a diffusers folder.*readme\.txt/);
    await expect(convertPipeline(path.join(work, 'nope'), path.join(work, 'o1'))).rejects.toThrow(/does not exist/);
    await noLeftovers(path.join(work, 'o1'));
  });

  test('a missing component', async () => {
    const dir = path.join(work, 'missing-comp');
    await mkdir(dir, { recursive: true });
    const idx = JSON.parse(await readFile(fixture('pipelines', 'sd15_tiny', 'model_index.json'), 'utf8'));
    await writeFile(path.join(dir, 'model_index.json'), JSON.stringify(idx));
    await expect(convertPipeline(dir, path.join(work, 'o2'))).rejects.toThrow(/component "[a-z_]+" is listed in model_index.json .* does not exist/);
    await expect(convertPipeline(fixture('pipelines', 'sd15_tiny'), path.join(work, 'o2'), { components: ['unet', 'controlnet'] }))
      .rejects.toThrow(/--components: controlnet not in/);
    await noLeftovers(path.join(work, 'o2'));
  });

  test('an unsupported class is named', async () => {
    const dir = path.join(work, 'odd-class');
    await mkdir(dir, { recursive: true });
    const cfg = JSON.parse(await readFile(fixture('models', 'pixart_tiny_noac', 'config.json'), 'utf8'));
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, _class_name: 'StableDiffusionSafetyChecker' }));
    await copyFile(fixture('models', 'pixart_tiny_noac', 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
    await expect(convertPipeline(dir, path.join(work, 'o3'))).rejects.toThrow(/model class "StableDiffusionSafetyChecker" is not supported/);
    await noLeftovers(path.join(work, 'o3'));
  });

  test('weight keys that do not match the config', async () => {
    const dir = path.join(work, 'wrong-keys');
    await mkdir(dir, { recursive: true });
    const cfg = JSON.parse(await readFile(fixture('models', 'pixart_tiny_noac', 'config.json'), 'utf8'));
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, num_layers: cfg.num_layers + 1 }));
    await copyFile(fixture('models', 'pixart_tiny_noac', 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
    await expect(convertPipeline(dir, path.join(work, 'o4'))).rejects.toThrow(/missing key: transformer_blocks\.\d+\./);
    await noLeftovers(path.join(work, 'o4'));
  });

  test('an existing output folder is refused unless --force, and an earlier output replaced atomically with it', async () => {
    const src = fixture('models', 'pixart_tiny_noac');
    const out = path.join(work, 'o5');
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, 'keep.txt'), 'x');
    await expect(convertPipeline(src, out)).rejects.toThrow(/already exists \(use --force/);
    // --force replaces only an empty folder or an earlier conversion's output (test/convert-safety.test.ts).
    await expect(convertPipeline(src, out, { force: true })).rejects.toThrow(/not the output of an earlier tgate convert/);
    expect(await readFile(path.join(out, 'keep.txt'), 'utf8')).toBe('x');
    await rm(path.join(out, 'keep.txt'));
    await convertPipeline(src, out, { force: true });
    await writeFile(path.join(out, 'keep.txt'), 'x');
    await convertPipeline(src, out, { force: true });
    expect(await exists(path.join(out, 'keep.txt'))).toBe(false);
    expect(await compare(src, out, bitIdentical)).toBe(0);
    await expect(convertPipeline(src, src, { force: true })).rejects.toThrow(/would contain or replace the input/);
  });

  test('a failure half-way (weights corrupted mid-conversion) leaves no output folder', async () => {
    const dir = path.join(work, 'corrupt-mid');
    const src = fixture('pipelines', 'sd15_tiny');
    await mkdir(dir, { recursive: true });
    for (const e of await readdir(src, { withFileTypes: true })) {
      if (!e.isDirectory()) { await copyFile(path.join(src, e.name), path.join(dir, e.name)); continue; }
      await mkdir(path.join(dir, e.name));
      for (const f of await readdir(path.join(src, e.name))) await copyFile(path.join(src, e.name, f), path.join(dir, e.name, f));
    }
    const out = path.join(work, 'o6');
    let truncated = false;
    await expect(convertPipeline(dir, out, {}, (p) => {
      // After the first component has started writing, the last one's file shrinks under us.
      if (!truncated && p.phase === 'tensor' && p.componentIndex === 1) {
        truncated = true;
        void truncateSync(path.join(dir, 'vae', 'diffusion_pytorch_model.safetensors'));
      }
    })).rejects.toThrow(/reading weight .* failed: .*(truncated|unexpected end)/);
    expect(truncated).toBe(true);
    await noLeftovers(out);
  });
});

/** Truncates synchronously enough for the next read: the progress callback cannot await. */
async function truncateSync(file: string): Promise<void> {
  const fs = await import('node:fs');
  const st = fs.statSync(file);
  fs.truncateSync(file, Math.floor(st.size / 2));
}

describe('peak memory', () => {
  test('converting a ~100 MB random checkpoint stays under 2× the largest tensor + one shard', async () => {
    // A T5 encoder layer wide enough that its checkpoint is ~100 MB (largest: the 33 MB embedding; linears
    // of 17 MB that need transposing); weights written tensor by tensor with a handmade header.
    const cfg = {
      architectures: ['T5EncoderModel'], vocab_size: 8000, d_model: 1024, d_kv: 64, d_ff: 4096, num_layers: 1, num_heads: 16,
      feed_forward_proj: 'gated-gelu', relative_attention_num_buckets: 32, relative_attention_max_distance: 128, layer_norm_epsilon: 1e-6,
    };
    const dir = path.join(work, 'big');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const model = modelFromConfig({ ...cfg, _class_name: 'T5EncoderModel' });
    const params = [...model.namedParameters()].map(([k, p]) => ({ k, shape: p.torchShape, n: p.size }));
    const header: Record<string, unknown> = {};
    let off = 0;
    for (const p of params) { header[p.k] = { dtype: 'F32', shape: p.shape, data_offsets: [off, off + 4 * p.n] }; off += 4 * p.n; }
    const hb = Buffer.from(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, ' '));
    const fh = await open(path.join(dir, 'model.safetensors'), 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length));
    await fh.write(len);
    await fh.write(hb);
    let seed = 1;
    for (const p of params) {
      const v = new Float32Array(p.n);
      for (let i = 0; i < v.length; i++) { seed = (seed * 1103515245 + 12345) >>> 0; v[i] = seed / 2 ** 32 - 0.5; }
      await fh.write(new Uint8Array(v.buffer));
    }
    await fh.close();
    const total = off;
    const largest = Math.max(...params.map((p) => 4 * p.n));
    expect(total).toBeGreaterThan(80e6);

    const shardMb = 4;
    const shard = shardMb * 1024 * 1024;
    const g = (globalThis as { gc?: () => void }).gc;
    g?.();
    const base = process.memoryUsage();
    let peakRss = 0;
    let peakAb = 0;
    const sample = (): void => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss - base.rss);
      peakAb = Math.max(peakAb, m.arrayBuffers - base.arrayBuffers);
    };
    const timer = setInterval(sample, 5);
    const out = path.join(work, 'big-out');
    await convertPipeline(dir, out, { shardMb }, sample);
    clearInterval(timer);
    sample();
    const MB = (b: number): string => (b / 1e6).toFixed(1);
    // Slack: 16 MB for the runtime (V8 heap growth, fs buffers, the 256 KiB half table…).
    const slack = 16e6;
    const bound = 2 * largest + shard + slack;
    console.log(`checkpoint ${MB(total)} MB, largest tensor ${MB(largest)} MB, shard ${MB(shard)} MB: ` +
      `peak Δ arrayBuffers ${MB(peakAb)} MB, peak Δ rss ${MB(peakRss)} MB, bound ${MB(bound)} MB (gc exposed: ${!!g})`);
    expect(peakAb).toBeLessThan(bound);
    expect(peakRss).toBeLessThan(bound);
    const conv = await openWeights(out);
    expect(conv.keys().length).toBe(params.length);
    await (conv as TfjsWeightSource).close();
    await rm(dir, { recursive: true, force: true });
    await rm(out, { recursive: true, force: true });
  });
});
