/** PixArtTransformer2DModel against diffusers' goldens (with and without additional conditions, mask and no mask). */
import * as tf from '@tensorflow/tfjs-core';
import { readFile } from 'node:fs/promises';
import { PixArtTransformer2DModel, type PixArtForwardOptions } from '../src/models/pixart-transformer.js';
import { get2dSincosPosEmbed } from '../src/layers/pixart-embeddings.js';
import { fixture, loadFixture, relL2T, TEST_BACKENDS, useBackend } from './support/helpers.js';

const BOUND: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };
const INTER_ORDER = ['pos_embed', 'adaln_single', 'caption_projection', 'transformer_blocks.0.attn1', 'transformer_blocks.0.attn2',
  'transformer_blocks.0', 'proj_out'];

const CASES: [string, string][] = [
  ['pixart_tiny_noac_forward', 'models/pixart_tiny_noac'],
  ['pixart_tiny_ac_forward', 'pipelines/pixart_tiny/transformer'],
];

function inputs(ref: Record<string, tf.Tensor>, mask: boolean): PixArtForwardOptions {
  return {
    hiddenStates: ref['in.hidden_states'], timestep: ref['in.timestep'], encoderHiddenStates: ref['in.encoder_hidden_states'],
    encoderAttentionMask: mask ? ref['in.encoder_attention_mask'] : null,
    resolution: ref['in.resolution'] ?? null, aspectRatio: ref['in.aspect_ratio'] ?? null,
  };
}

describe.each(TEST_BACKENDS)('PixArtTransformer2DModel on %s', (backend) => {
  const bound = BOUND[backend] ?? 1e-4;
  beforeAll(async () => { await useBackend(backend); });
  afterAll(async () => { await useBackend('cpu'); });

  test.each(CASES)('%s matches diffusers (intermediates first, then out and out_nomask)', async (golden, dir) => {
    const ref = await loadFixture(`goldens/${golden}.safetensors`);
    const model = await PixArtTransformer2DModel.fromPretrained(fixture(dir));
    const got = new Map<string, tf.Tensor>();
    const out = model.forward({ ...inputs(ref, true), record: (n, t) => { if (!got.has(n)) got.set(n, tf.keep(t.clone())); } });
    const outNoMask = model.forward(inputs(ref, false));
    const report: string[] = [];
    let first: string | null = null;
    const check = (name: string, t: tf.Tensor | undefined, r: tf.Tensor) => {
      if (!t) { first ??= `${name}: not recorded`; return; }
      const e = relL2T(t, r);
      report.push(`${name}=${e.toExponential(2)}`);
      if (!(e <= bound)) first ??= `${name}: rel-L2 ${e.toExponential(3)} > ${bound}`;
    };
    for (const n of INTER_ORDER) check(`inter.${n}`, got.get(n), ref[`inter.${n}`]);
    check('out', out, ref.out);
    check('out_nomask', outNoMask, ref.out_nomask);
    console.log(`[${backend}] ${golden} rel-L2: ${report.join(' ')}`);
    expect(first).toBeNull();
    // the mask must matter in the reference, or the masked comparison would prove nothing
    expect(relL2T(ref.out_nomask, ref.out)).toBeGreaterThan(1e-3);

    // no leak over repeated forwards, with and without recording
    const before = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      model.forward(inputs(ref, true)).dispose();
      model.forward({ ...inputs(ref, false), record: () => undefined }).dispose();
    }
    expect(tf.memory().numTensors).toBe(before);

    [out, outNoMask, ...got.values(), ...Object.values(ref)].forEach((t) => t.dispose());
    model.dispose();
  });
});

describe('PixArtTransformer2DModel config and shapes', () => {
  test('full-size PixArt-α 1024 builds without weights: exact parameter count, 56 processors', async () => {
    const cfg = JSON.parse(await readFile(fixture('configs/pixart_alpha_1024_transformer.json'), 'utf8'));
    const counts = JSON.parse(await readFile(fixture('configs/param_counts.json'), 'utf8'));
    const before = tf.memory().numTensors;
    const m = PixArtTransformer2DModel.fromConfig(cfg);
    expect(m.numParameters()).toBe(counts.pixart_alpha_1024_transformer);
    expect(m.attnProcessors().size).toBe(56);
    expect(m.config.useAdditionalConditions).toBe(true);
    expect(m.config.interpolationScale).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    // the same checkpoint saved as Transformer2DModel (original PixArt-α release) and a PixArt-Σ style config
    const legacy = PixArtTransformer2DModel.fromConfig({ ...cfg, _class_name: 'Transformer2DModel', use_linear_projection: false, num_vector_embeds: null, double_self_attention: false });
    expect(legacy.numParameters()).toBe(counts.pixart_alpha_1024_transformer);
    const sigma = PixArtTransformer2DModel.fromConfig({ ...cfg, use_additional_conditions: false, interpolation_scale: 2 });
    expect(sigma.config.useAdditionalConditions).toBe(false);
    expect(sigma.numParameters()).toBeLessThan(counts.pixart_alpha_1024_transformer);
    expect(PixArtTransformer2DModel.fromConfig({ ...cfg, sample_size: 64, use_additional_conditions: null }).config.useAdditionalConditions).toBe(false);
  });

  test('unsupported config values are errors naming key and value', async () => {
    const cfg = JSON.parse(await readFile(fixture('models/pixart_tiny_noac/config.json'), 'utf8'));
    expect(() => PixArtTransformer2DModel.fromConfig({ ...cfg, norm_type: 'ada_norm_zero' })).toThrow(/norm_type="ada_norm_zero"/);
    expect(() => PixArtTransformer2DModel.fromConfig({ ...cfg, attention_type: 'gated' })).toThrow(/attention_type="gated"/);
    expect(() => PixArtTransformer2DModel.fromConfig({ ...cfg, activation_fn: 'swiglu' })).toThrow(/activation_fn="swiglu"/);
    expect(() => PixArtTransformer2DModel.fromConfig({ ...cfg, patch_size: null })).toThrow(/patch_size/);
    expect(() => PixArtTransformer2DModel.fromConfig({ ...cfg, _class_name: 'UNet2DConditionModel' })).toThrow(/UNet2DConditionModel/);
    expect(() => PixArtTransformer2DModel.fromConfig({ ...cfg, _class_name: 'Transformer2DModel', norm_type: 'layer_norm' })).toThrow(/norm_type="layer_norm"/);
  });

  test('clear errors for wrong inputs; non-square latents; scalar timestep', () => {
    const m = PixArtTransformer2DModel.fromConfig({
      num_attention_heads: 2, attention_head_dim: 6, in_channels: 4, out_channels: 8, num_layers: 1, cross_attention_dim: 12,
      caption_channels: 10, sample_size: 128, patch_size: 2,
    });
    m.initRandom(3);
    const enc = tf.randomNormal([1, 5, 10], 0, 1, 'float32', 1);
    const x = tf.randomNormal([1, 4, 6, 10], 0, 1, 'float32', 2);
    const ok: PixArtForwardOptions = { hiddenStates: x, timestep: 10, encoderHiddenStates: enc, resolution: [48, 80], aspectRatio: [0.6] };
    const bad = [tf.zeros([1, 4, 5, 10]), tf.zeros([1, 3, 6, 10]), tf.zeros([1, 5, 12]), tf.ones([1, 4])];
    expect(() => m.forward({ ...ok, hiddenStates: bad[0] })).toThrow(/multiples of 2.*\[1,4,5,10\]/);
    expect(() => m.forward({ ...ok, hiddenStates: bad[1] })).toThrow(/hiddenStates/);
    expect(() => m.forward({ ...ok, encoderHiddenStates: bad[2] })).toThrow(/encoderHiddenStates must be \[1, L, 10\]/);
    expect(() => m.forward({ ...ok, encoderAttentionMask: bad[3] })).toThrow(/encoderAttentionMask/);
    bad.forEach((t) => t.dispose());
    expect(() => m.forward({ ...ok, resolution: null })).toThrow(/resolution is required/);
    expect(() => m.forward({ ...ok, aspectRatio: [1, 2, 3] })).toThrow(/aspectRatio/);
    expect(() => m.forward({ ...ok, timestep: [1, 2, 3] })).toThrow(/timestep/);
    const before = tf.memory().numTensors;
    const y = m.forward(ok);
    expect(y.shape).toEqual([1, 8, 6, 10]);
    // a [B,1,L] bias of zeros equals no mask
    const bias = tf.zeros([1, 1, 5]);
    const y2 = m.forward({ ...ok, encoderAttentionMask: bias });
    expect(relL2T(y2, y)).toBeLessThan(1e-7);
    [y, y2, bias].forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(before);
    [enc, x].forEach((t) => t.dispose());
    m.dispose();
  });

  test('2-D sin-cos position embedding: non-square grid layout', () => {
    // first half encodes the column coordinate, second half the row (diffusers' meshgrid(w, h) order)
    const e = get2dSincosPosEmbed(8, 2, 3, 2, 1);
    const at = (r: number, c: number, k: number) => e[(r * 3 + c) * 8 + k];
    expect(at(1, 0, 0)).toBeCloseTo(0); // sin(col 0)
    expect(at(0, 1, 0)).toBeCloseTo(Math.sin(2 / 3), 6); // col 1 at base 2 over 3 columns → 1/(3/2)
    expect(at(1, 0, 4)).toBeCloseTo(Math.sin(1), 6); // row 1 at base 2 over 2 rows → 1
  });
});
