/**
 * LoRA files that do not fit (every problem named, nothing created), kohya names resolved against the real
 * modules (diffusers paths and the original SD names kohya's SDXL trainer writes), and LoRAs on convolutions
 * (3×3 down + 1×1 up in our HWIO layout, strided, 1×1 spelled as Linear and the reverse) checked against the
 * delta computed here from the PyTorch-layout tensors.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, relL2, relL2T, useBackend } from './support/helpers.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { CLIPTextModel } from '../src/models/clip-text.js';
import type { Conv2d } from '../src/layers/conv.js';
import type { Linear } from '../src/layers/linear.js';
import { encodeSafetensors, SafetensorsFile } from '../src/io/safetensors.js';
import { LoraSet, applyLora } from '../src/lora/lora-set.js';
import { LoraError } from '../src/lora/lora-file.js';

const PEFT = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');
const KOHYA = fixture('ext2/models/sd15_tiny_lora/kohya_lora.safetensors');
type Tensors = Record<string, { values: Float32Array; shape: number[] }>;

async function tensorsOf(file: string): Promise<Tensors> {
  const f = await SafetensorsFile.fromBytes(readFileSync(file));
  const out: Tensors = {};
  for (const k of f.keys()) { const v = await f.readValues(k); out[k] = { values: v.values as Float32Array, shape: v.shape }; }
  return out;
}

/** Seeded values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 31 - 1; });
}

let unet: UNet2DConditionModel;
let te: CLIPTextModel;
let peft: Tensors;
let kohya: Tensors;
beforeAll(async () => {
  await useBackend('cpu');
  unet = await UNet2DConditionModel.fromPretrained(fixture('pipelines/sd15_tiny/unet'));
  te = await CLIPTextModel.fromPretrained(fixture('pipelines/sd15_tiny/text_encoder'));
  peft = await tensorsOf(PEFT);
  kohya = await tensorsOf(KOHYA);
});
afterAll(() => { unet.dispose(); te.dispose(); });

const Q = 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const KQ = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';

/** `base` with keys renamed (`to` null: removed) and tensors added or replaced. */
function edit(base: Tensors, rename: Record<string, string | null>, add: Tensors = {}): Uint8Array {
  const out: Tensors = {};
  for (const [k, v] of Object.entries(base)) if (rename[k] !== null) out[rename[k] ?? k] = v;
  return encodeSafetensors({ ...out, ...add });
}

async function loadError(bytes: Uint8Array, o: { components?: string[]; sd?: 'unet' } = {}): Promise<LoraError> {
  const lora = new LoraSet(() => ({ unet, text_encoder: te }));
  const before = tf.memory().numTensors;
  const err = await lora.load(bytes, { components: o.components }).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(LoraError);
  // Nothing was created or attached.
  expect(tf.memory().numTensors).toBe(before);
  expect(lora.list()).toEqual([]);
  expect(unet.down_blocks.at(0).attentions!.at(0).transformer_blocks.at(0).attn1.to_q.lowRank).toEqual([]);
  return err as LoraError;
}

describe('a LoRA that does not fit is rejected with every problem named', () => {
  test('a key that matches no module names it and the closest module paths (PEFT and kohya)', async () => {
    const e1 = await loadError(edit(peft, { [`${Q}.lora_A.weight`]: `${Q}x.lora_A.weight`, [`${Q}.lora_B.weight`]: `${Q}x.lora_B.weight` }));
    expect(e1.problems).toHaveLength(1);
    expect(e1.message).toContain(`"${Q}x.lora_A.weight" matches no unet layer (closest unet modules: down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`);
    const e2 = await loadError(edit(kohya, { [`${KQ}.lora_down.weight`]: `${KQ}x.lora_down.weight`, [`${KQ}.lora_up.weight`]: `${KQ}x.lora_up.weight`, [`${KQ}.alpha`]: `${KQ}x.alpha` }));
    expect(e2.message).toContain(`"${KQ}x.lora_down.weight" matches no unet layer (closest unet modules: down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`);
  });

  test('shape and rank mismatches name the keys and both shapes', async () => {
    const e = await loadError(edit(peft, {}, {
      [`${Q}.lora_B.weight`]: { values: values(64, 1), shape: [16, 4] },
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight': { values: values(96, 2), shape: [32, 3] },
    }));
    expect(e.problems).toHaveLength(2);
    expect(e.message).toContain(`"${Q}.lora_A.weight" [4, 32] / "${Q}.lora_B.weight" [16, 4] do not fit unet module "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" (Linear 32→32): expected [r, 32] and [32, r]`);
    expect(e.message).toMatch(/"unet\.mid_block\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.lora_A\.weight" \[4, 32\] and ".*to_k\.lora_B\.weight" \[32, 3\] disagree on the rank \(4 vs 3\)/);
  });

  test('half a module, LoRA variants, non-LoRA keys, a module that is not Linear/Conv2d, missing components', async () => {
    const e = await loadError(edit(peft, { [`${Q}.lora_B.weight`]: null }, {
      'lora_unet_conv_in.lora_mid.weight': { values: values(4, 3), shape: [2, 2] },
      'unet.conv_in.weight': { values: values(4, 4), shape: [4] },
      'unet.conv_norm_out.lora_A.weight': { values: values(64, 5), shape: [2, 32] },
      'unet.conv_norm_out.lora_B.weight': { values: values(64, 6), shape: [32, 2] },
      'text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight': { values: values(64, 7), shape: [2, 32] },
      'text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight': { values: values(64, 8), shape: [32, 2] },
    }));
    const m = e.message;
    expect(m).toContain(`"${Q}.lora_A.weight" has no matching up (lora_B / lora_up) tensor`);
    expect(m).toContain('"lora_unet_conv_in.lora_mid.weight" belongs to a LoRA variant that is not supported');
    expect(m).toContain('"unet.conv_in.weight" is not a LoRA tensor');
    expect(m).toContain('unet module "conv_norm_out" is a GroupNorm; a LoRA adapts Linear and Conv2d layers');
    expect(m).toContain('is for text_encoder_2, which is not loaded here (components: unet, text_encoder)');
    expect(e.problems).toHaveLength(5);
  });

  test('a module given twice, and bad options', async () => {
    const e = await loadError(encodeSafetensors({ ...peft, ...kohya }));
    expect(e.problems).toHaveLength(60);
    expect(e.problems).toContain(`"${Q}.lora_A.weight" and "${KQ}.lora_down.weight" both adapt unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`);
    const lora = new LoraSet(() => ({ unet }));
    await expect(lora.load(KOHYA, { scale: Number.NaN })).rejects.toThrow(/scale must be a finite number/);
    await lora.load(KOHYA, { components: ['unet'] });
    await expect(lora.load(KOHYA, { name: 'default_0' })).rejects.toThrow(/"default_0" is already loaded/);
    await expect(lora.unload('nope')).rejects.toThrow(/no LoRA named "nope" \(loaded: default_0\)/);
    await lora.unload();
    await expect(applyLora(unet, KOHYA, { prefix: 'vae' })).rejects.toThrow(/unknown LoRA prefix "vae"/);
  });

  test('components: applies one component\'s keys and ignores the others', async () => {
    const lora = new LoraSet(() => ({ unet, text_encoder: null }));
    await expect(lora.load(KOHYA)).rejects.toThrow(/is for text_encoder, which is not loaded here/);
    expect((await lora.load(KOHYA, { components: ['unet'] })).modules).toEqual({ unet: 48 });
    await lora.unload();
  });
});

/** Original SD name of each diffusers prefix of the tiny UNet (2 blocks of 2 layers), written out by hand. */
const LDM_ATTENTIONS: [string, string][] = [
  ['down_blocks_0_attentions_0', 'input_blocks_1_1'], ['down_blocks_0_attentions_1', 'input_blocks_2_1'],
  ['mid_block_attentions_0', 'middle_block_1'],
  ['up_blocks_1_attentions_0', 'output_blocks_3_1'], ['up_blocks_1_attentions_1', 'output_blocks_4_1'], ['up_blocks_1_attentions_2', 'output_blocks_5_1'],
];

describe('kohya names resolve against the real modules', () => {
  test('original SD (SGM) block names give the same adapter as diffusers names', async () => {
    const renamed: Record<string, string> = {};
    for (const k of Object.keys(kohya)) {
      const hit = LDM_ATTENTIONS.find(([d]) => k.startsWith(`lora_unet_${d}_`));
      if (hit) renamed[k] = k.replace(`lora_unet_${hit[0]}_`, `lora_unet_${hit[1]}_`);
    }
    expect(Object.keys(renamed)).toHaveLength(48 * 3);
    const g = await loadFixture('ext2/lora/forward.safetensors');
    const run = () => unet.forward({ sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'] });
    const a = await applyLora(unet, KOHYA, { prefix: 'unet' });
    const ref = run();
    await a.unload();
    const b = await applyLora(unet, edit(kohya, renamed), { prefix: 'unet' });
    const out = run();
    await b.unload();
    expect(relL2T(out, ref)).toBe(0);
    tf.dispose([ref, out, ...Object.values(g)]);
  });

  test('resnet, resampler, embedding and output layers by their original names', async () => {
    const cases: [string, () => Linear | Conv2d, number[], number[]][] = [
      ['input_blocks_1_0_in_layers_2', () => unet.down_blocks.at(0).resnets.at(0).conv1, [2, 32, 3, 3], [32, 2, 1, 1]],
      ['input_blocks_3_0_op', () => unet.down_blocks.at(0).downsamplers!.at(0).conv!, [2, 32, 3, 3], [32, 2, 1, 1]],
      ['input_blocks_4_0_skip_connection', () => unet.down_blocks.at(1).resnets.at(0).conv_shortcut!, [2, 32, 1, 1], [64, 2, 1, 1]],
      ['middle_block_2_emb_layers_1', () => unet.mid_block!.resnets.at(1).time_emb_proj!, [2, 128], [64, 2]],
      ['output_blocks_2_1_conv', () => unet.up_blocks.at(0).upsamplers!.at(0).conv!, [2, 64, 3, 3], [64, 2, 1, 1]],
      ['output_blocks_3_0_out_layers_3', () => unet.up_blocks.at(1).resnets.at(0).conv2, [2, 32, 3, 3], [32, 2, 1, 1]],
      ['output_blocks_5_1_proj_in', () => unet.up_blocks.at(1).attentions!.at(2).proj_in as Conv2d, [2, 32], [32, 2]],
      ['time_embed_0', () => unet.time_embedding.linear_1, [2, 32], [128, 2]],
      ['out_2', () => unet.conv_out, [2, 32, 3, 3], [4, 2, 1, 1]],
    ];
    const t: Tensors = {};
    cases.forEach(([name, , d, u], i) => {
      t[`lora_unet_${name}.lora_down.weight`] = { values: values(d.reduce((a, b) => a * b), 10 + i), shape: d };
      t[`lora_unet_${name}.lora_up.weight`] = { values: values(u.reduce((a, b) => a * b), 30 + i), shape: u };
    });
    const lora = new LoraSet(() => ({ unet }));
    await lora.load(encodeSafetensors(t));
    for (const [name, layer] of cases) expect([name, layer().lowRank.length]).toEqual([name, 1]);
    await lora.unload();
    for (const [, layer] of cases) expect(layer().lowRank).toEqual([]);
  });
});

describe('LoRA on convolutions', () => {
  /** Δ in our layout from PyTorch-layout down [r, in, k, k] and up [out, r(, 1, 1)], as W + s·(α/r)·up·down. */
  function deltaOurs(down: Float32Array, up: Float32Array, r: number, inC: number, k: number, outC: number, s: number): Float32Array {
    const d = new Float32Array(k * k * inC * outC);
    for (let o = 0; o < outC; o++) for (let i = 0; i < inC; i++) for (let y = 0; y < k; y++) for (let x = 0; x < k; x++) {
      let acc = 0;
      for (let j = 0; j < r; j++) acc += up[o * r + j] * down[((j * inC + i) * k + y) * k + x];
      d[((y * k + x) * inC + i) * outC + o] = s * acc;
    }
    return d;
  }

  test('3×3, strided and 1×1 convolutions and a Linear given as 1×1: the fused delta is up·down in HWIO; unfused equals fused', async () => {
    const targets: [string, () => Linear | Conv2d, number, number, number, number][] = [
      ['down_blocks.0.resnets.0.conv1', () => unet.down_blocks.at(0).resnets.at(0).conv1, 2, 32, 3, 32],
      ['down_blocks.0.downsamplers.0.conv', () => unet.down_blocks.at(0).downsamplers!.at(0).conv!, 3, 32, 3, 32],
      ['down_blocks.0.attentions.0.proj_in', () => unet.down_blocks.at(0).attentions!.at(0).proj_in as Conv2d, 2, 32, 1, 32],
      ['time_embedding.linear_1', () => unet.time_embedding.linear_1, 2, 32, 1, 128],
    ];
    const t: Tensors = {};
    targets.forEach(([path, , r, inC, k, outC], n) => {
      // The 1×1 convolution spelled as a Linear ([r, in]), the Linear spelled as a 1×1 convolution.
      const downShape = path.endsWith('proj_in') ? [r, inC] : [r, inC, k, k];
      const upShape = path.endsWith('proj_in') ? [outC, r] : [outC, r, 1, 1];
      t[`unet.${path}.lora_A.weight`] = { values: values(r * inC * k * k, 50 + n), shape: downShape };
      t[`unet.${path}.lora_B.weight`] = { values: values(outC * r, 70 + n), shape: upShape };
      t[`unet.${path}.alpha`] = { values: Float32Array.of(1.5), shape: [] };
    });
    const x = tf.randomNormal([2, 4, 8, 8], 0, 1, 'float32', 5);
    const enc = tf.randomNormal([2, 6, 32], 0, 1, 'float32', 6);
    const run = () => unet.forward({ sample: x, timestep: 321, encoderHiddenStates: enc });
    const originals = targets.map(([, layer]) => layer().weight.t.dataSync().slice());
    const lora = new LoraSet(() => ({ unet }));
    await lora.load(encodeSafetensors(t), { scale: 0.8 });
    const unfused = run();
    await lora.fuse();
    const fused = run();
    const deltaErrs: string[] = [];
    targets.forEach(([path, layer, r, inC, k, outC], n) => {
      const want = deltaOurs(t[`unet.${path}.lora_A.weight`].values, t[`unet.${path}.lora_B.weight`].values, r, inC, k, outC, Math.fround(0.8 * (1.5 / r)));
      const got = layer().weight.t.dataSync();
      const delta = got.map((v, i) => v - originals[n][i]);
      const e = relL2(delta, want);
      deltaErrs.push(`${path} ${e.toExponential(2)}`);
      expect([path, e < 1e-5]).toEqual([path, true]);
    });
    const e = relL2T(unfused, fused);
    console.log(`conv LoRA: fused delta vs up·down rel-L2: ${deltaErrs.join(', ')}; unfused vs fused UNet output ${e.toExponential(2)}`);
    expect(e).toBeLessThanOrEqual(1e-5);
    await lora.unload();
    tf.dispose([x, enc, unfused, fused]);
  });
});

describe('LoRA on PixArt (transformer and T5 keys)', () => {
  test('pipe.loadLora adapts the transformer and the T5 encoder; unfused equals fused; unfuse restores every weight', async () => {
    const { loadPipeline } = await import('../src/pipelines/load.js');
    const { specOf, runModel } = await import('../src/models/registry.js');
    const pipe = await loadPipeline(fixture('pipelines/pixart_tiny')) as import('../src/pipelines/pixart-alpha.js').PixArtAlphaPipeline;
    const targets = [
      ['transformer', pipe.transformer, 'transformer_blocks.0.attn2.to_k'], ['transformer', pipe.transformer, 'transformer_blocks.1.ff.net.0.proj'],
      ['text_encoder', pipe.textEncoder!, 'encoder.block.0.layer.0.SelfAttention.q'], ['text_encoder', pipe.textEncoder!, 'encoder.block.1.layer.1.DenseReluDense.wo'],
    ] as const;
    const t: Tensors = {};
    targets.forEach(([component, model, path], n) => {
      const layer = new Map(model.namedModules()).get(path) as Linear;
      t[`${component}.${path}.lora_A.weight`] = { values: values(3 * layer.inFeatures, 90 + n), shape: [3, layer.inFeatures] };
      t[`${component}.${path}.lora_B.weight`] = { values: values(3 * layer.outFeatures, 95 + n), shape: [layer.outFeatures, 3] };
    });
    const run = () => [pipe.transformer, pipe.textEncoder!].map((m) => {
      const x = specOf(m).sampleInputs(m);
      const o = Object.values(runModel(m, x));
      const v = o.map((y) => y.dataSync().slice());
      tf.dispose([...o, ...Object.values(x)]);
      return v;
    }).flat();
    const weightsBefore = [...pipe.transformer.namedParameters(), ...pipe.textEncoder!.namedParameters()].map(([, p]) => p.t.dataSync().slice());
    const plain = run();
    const info = await pipe.loadLora(encodeSafetensors(t), { scale: 0.7 });
    expect(info.modules).toEqual({ transformer: 2, text_encoder: 2 });
    const unfused = run();
    await pipe.fuseLora();
    const fused = run();
    const errs = unfused.map((u, i) => relL2(u, fused[i]));
    const moved = Math.min(...plain.map((p, i) => relL2(p, fused[i])));
    console.log(`PixArt LoRA: unfused vs fused rel-L2 ${errs.map((e) => e.toExponential(2)).join(', ')}; smallest change from no LoRA ${moved.toExponential(2)}`);
    for (const e of errs) expect(e).toBeLessThanOrEqual(1e-5);
    expect(moved).toBeGreaterThan(1e-4);
    await pipe.unloadLora();
    const weightsAfter = [...pipe.transformer.namedParameters(), ...pipe.textEncoder!.namedParameters()].map(([, p]) => p.t.dataSync());
    expect(weightsAfter.filter((w, i) => Buffer.compare(Buffer.from(w.buffer, w.byteOffset, w.byteLength), Buffer.from(weightsBefore[i].buffer)) !== 0)).toHaveLength(0);
    pipe.dispose();
  });
});
