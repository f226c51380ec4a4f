/**
 * ControlNetModel against diffusers v0.30.3 (ext2/controlnet/controlnet_forward): the residuals and hook
 * outputs, the UNet with those residuals, conditioning_scale and guess mode, the attention seam TGATE needs,
 * the MAC count against the layers a forward actually runs, parameter counts against the UNet's, config and
 * input errors, and `tgate convert` of a ControlNet folder.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import { TEST_BACKENDS, fixture, loadFixture, relL2T, useBackend } from './support/helpers.js';
import { ControlNetModel, guessModeScales, type ControlNetForwardOptions } from '../src/models/controlnet.js';
import { controlnetConfigFromUnet } from '../src/models/controlnet-config.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { loadModel } from '../src/models/load.js';
import { modelFromConfig, modelMacs, runModel, specOf } from '../src/models/registry.js';
import type { Module } from '../src/nn/module.js';
import { countLayerMacs, type LayerMacs } from './support/layer-macs.js';
import { AttnProcessorDefault } from '../src/attention/processor.js';
import { convertComponent } from '../src/convert/convert.js';
import { verifyComponent } from '../src/convert/verify.js';

const CN = fixture('ext2/models/sd15_tiny_controlnet');
const UNET = fixture('pipelines/sd15_tiny/unet');
const TOL: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };
const readJson = async (p: string) => JSON.parse(await readFile(p, 'utf8')) as Record<string, unknown>;

/** ControlNetModel.from_unet's config: the UNet's settings, the conditioning embedding's defaults. */
const fromUnetConfig = (u: Record<string, unknown>): ControlNetModel => modelFromConfig(controlnetConfigFromUnet(u)) as ControlNetModel;

function inputs(g: Record<string, tf.Tensor>, extra: Partial<ControlNetForwardOptions> = {}): ControlNetForwardOptions {
  return { sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'], controlnetCond: g['in.controlnet_cond'], ...extra };
}

describe.each(TEST_BACKENDS)('ControlNetModel equals diffusers on %s', (backend) => {
  let cn: ControlNetModel;
  let unet: UNet2DConditionModel;
  let g: Record<string, tf.Tensor>;
  beforeAll(async () => {
    await useBackend(backend);
    cn = await ControlNetModel.fromPretrained(CN);
    unet = await UNet2DConditionModel.fromPretrained(UNET);
    g = await loadFixture('ext2/controlnet/controlnet_forward.safetensors');
  });
  afterAll(() => { cn.dispose(); unet.dispose(); tf.dispose(Object.values(g)); });

  test('residuals, hook outputs and the UNet with the residuals', () => {
    const tol = TOL[backend] ?? 1e-4;
    const before = tf.memory().numTensors;
    const errs: [string, number][] = [];
    const hooks: string[] = [];
    const out = cn.forward(inputs(g, {
      record: (name, t) => { if (`inter.${name}` in g) { hooks.push(name); errs.push([`inter.${name}`, relL2T(t, g[`inter.${name}`])]); } },
    }));
    expect(hooks.sort()).toEqual(['controlnet_cond_embedding', 'conv_in']);
    expect(out.downBlockResSamples).toHaveLength(6);
    out.downBlockResSamples.forEach((t, k) => errs.push([`down_block_res_samples.${k}`, relL2T(t, g[`down_block_res_samples.${k}`])]));
    errs.push(['mid_block_res_sample', relL2T(out.midBlockResSample, g.mid_block_res_sample)]);
    const u = unet.forward({
      sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'],
      downBlockAdditionalResiduals: out.downBlockResSamples, midBlockAdditionalResidual: out.midBlockResSample,
    });
    errs.push(['unet_out_with_residuals', relL2T(u, g.unet_out_with_residuals)]);
    console.log(`controlnet [${backend}] ${errs.map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')}`);
    for (const [k, e] of errs) expect([k, e <= tol]).toEqual([k, true]);
    // The residuals change the UNet's output (a check that cannot pass by ignoring them).
    const plain = unet.forward({ sample: g['in.sample'], timestep: g['in.timestep'], encoderHiddenStates: g['in.encoder_hidden_states'] });
    expect(relL2T(plain, g.unet_out_with_residuals)).toBeGreaterThan(1e-2);
    tf.dispose([u, plain, ...out.downBlockResSamples, out.midBlockResSample]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('conditioning_scale multiplies every output exactly; guess mode scales them by logspace(-1, 0)', () => {
    const base = cn.forward(inputs(g));
    const all = (o: { downBlockResSamples: tf.Tensor[]; midBlockResSample: tf.Tensor }) => [...o.downBlockResSamples, o.midBlockResSample];
    for (const s of [0.5, 0.8]) {
      const scaled = all(cn.forward(inputs(g, { conditioningScale: s })));
      all(base).forEach((b, k) => {
        const want = tf.mul(b, s);
        expect(Buffer.compare(Buffer.from(scaled[k].dataSync().buffer), Buffer.from(want.dataSync().buffer))).toBe(0);
        want.dispose();
      });
      tf.dispose(scaled);
    }
    const scales = guessModeScales(6, 0.8);
    scales.forEach((v, k) => expect(v).toBeCloseTo(0.8 * 10 ** (-1 + k / 6), 6));
    const guessed = all(cn.forward(inputs(g, { conditioningScale: 0.8, guessMode: true })));
    all(base).forEach((b, k) => {
      const want = tf.mul(b, scales[k]);
      expect(relL2T(guessed[k], want)).toBe(0);
      want.dispose();
    });
    tf.dispose([...all(base), ...guessed]);
  });
});

describe('ControlNetModel structure (cpu)', () => {
  beforeAll(async () => { await useBackend('cpu'); });

  test('the registry builds it by _class_name; attention processors are reachable for TGATE', async () => {
    const cn = await loadModel<ControlNetModel>(CN);
    expect(cn).toBeInstanceOf(ControlNetModel);
    const procs = cn.attnProcessors();
    expect([...procs.keys()]).toEqual([
      'down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor', 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor',
      'down_blocks.0.attentions.1.transformer_blocks.0.attn1.processor', 'down_blocks.0.attentions.1.transformer_blocks.0.attn2.processor',
      'mid_block.attentions.0.transformer_blocks.0.attn1.processor', 'mid_block.attentions.0.transformer_blocks.0.attn2.processor',
    ]);
    // A processor set on the ControlNet runs in its forward (what TGATE's session will install).
    let calls = 0;
    const counting = { call: (...a: Parameters<AttnProcessorDefault['call']>) => { calls++; return new AttnProcessorDefault().call(...a); } };
    cn.setAttnProcessor(counting);
    const x = specOf(cn).sampleInputs(cn);
    const o = runModel(cn, x);
    expect(Object.keys(o).sort()).toEqual([...Array.from({ length: 6 }, (_, k) => `down_block_res_samples.${k}`), 'mid_block_res_sample']);
    expect(calls).toBe(6);
    cn.setAttnProcessor(new AttnProcessorDefault());
    tf.dispose([...Object.values(o), ...Object.values(x)]);
    cn.dispose();
  });

  test('MACs equal the Linear/Conv2d work a forward runs (self, cross, rest), as thop counts it', async () => {
    const cn = await ControlNetModel.fromPretrained(CN);
    const unet = await UNet2DConditionModel.fromPretrained(UNET);
    for (const [m, h] of [[cn, 96], [unet, 96], [cn, 64]] as const) {
      const counted = await countMacs(m, h);
      const want = modelMacs(m, { height: h, width: h, textLen: 77 });
      expect([m.constructor.name, h, counted]).toEqual([m.constructor.name, h, { rest: want.rest, selfLinear: want.selfLinear, crossLinear: want.crossLinear }]);
    }
    cn.dispose();
    unet.dispose();
  });

  test('full-size SD-1.5 and SDXL ControlNets have the UNet\'s down path and mid block plus the embedding and zero convolutions', async () => {
    for (const name of ['sd15_unet', 'sdxl_unet']) {
      const u = await readJson(fixture(`configs/${name}.json`));
      const cn = fromUnetConfig(u);
      const unet = modelFromConfig(u) as UNet2DConditionModel;
      const shared = ['conv_in', 'time_embedding', 'add_embedding', 'down_blocks', 'mid_block']
        .reduce((n, k) => n + ((unet as unknown as Record<string, Module | undefined>)[k]?.numParameters() ?? 0), 0);
      const c0 = cn.config.blockOutChannels[0];
      const conv = (i: number, o: number, k: number) => i * o * k * k + o;
      const w = [16, 32, 96, 256];
      const embedding = conv(3, 16, 3) + w.slice(0, -1).reduce((n, x, i) => n + conv(x, x, 3) + conv(x, w[i + 1], 3), 0) + conv(256, c0, 3);
      const zeros = cn.controlnet_down_blocks.items.reduce((n, z) => n + conv(z.inChannels, z.inChannels, 1), 0) + conv(cn.controlnet_mid_block.inChannels, cn.controlnet_mid_block.inChannels, 1);
      expect([name, cn.numParameters()]).toEqual([name, shared + embedding + zeros]);
      expect(cn.controlnet_down_blocks.length).toBe(name === 'sd15_unet' ? 12 : 9);
      expect(cn.attnProcessors().size).toBe(name === 'sd15_unet' ? 14 : 68);
    }
  });

  test('an SDXL ControlNet made from the SDXL UNet, with an identity head, reproduces the UNet\'s down path (text-time included)', async () => {
    const unet = await UNet2DConditionModel.fromPretrained(fixture('pipelines/sdxl_tiny/unet'));
    const cn = fromUnetConfig(await readJson(fixture('pipelines/sdxl_tiny/unet/config.json')));
    const own = new Map(unet.namedParameters());
    // from_unet's weights; a conditioning embedding of zeros (it adds nothing) and 1×1 identities for the zero convolutions.
    for (const [k, p] of cn.namedParameters()) {
      const identity = /^controlnet_(down_blocks\.\d+|mid_block)\.weight$/.test(k);
      p.set(own.get(k)?.t.clone() ?? (identity ? tf.eye(p.shape[2]).reshape(p.shape) : tf.zeros(p.shape)));
    }
    const g = await loadFixture('goldens/sdxl_tiny_unet_forward.safetensors');
    const x = { sample: g['in.sample'], timestep: 500, encoderHiddenStates: g['in.encoder_hidden_states'], textEmbeds: g['in.text_embeds'], timeIds: g['in.time_ids'] };
    const seen: Record<string, tf.Tensor> = {};
    const keep = (name: string, t: tf.Tensor) => { if (/^(down_blocks\.\d|mid_block)$/.test(name)) seen[name] = tf.keep(t.clone()); };
    unet.forward({ ...x, record: keep }).dispose();
    const out = cn.forward({ ...x, controlnetCond: tf.zeros([2, 3, 256, 256]) });
    // Each block's last skip is its output; SDXL's tiny UNet: blocks of 2 layers, downsamplers on the first two.
    const errs = [relL2T(out.downBlockResSamples[3], seen['down_blocks.0']), relL2T(out.downBlockResSamples[6], seen['down_blocks.1']),
      relL2T(out.downBlockResSamples[8], seen['down_blocks.2']), relL2T(out.midBlockResSample, seen.mid_block)];
    console.log(`SDXL ControlNet with an identity head vs the UNet's down path: ${errs.map((e) => e.toExponential(2)).join(', ')}`);
    for (const e of errs) expect(e).toBeLessThanOrEqual(1e-6);
    tf.dispose([...out.downBlockResSamples, out.midBlockResSample, ...Object.values(seen), ...Object.values(g)]);
    cn.dispose();
    unet.dispose();
  });

  test('config and input errors name the key or input', async () => {
    const base = await readJson(path.join(CN, 'config.json'));
    const bad: [string, unknown, RegExp][] = [
      ['class_embed_type', 'timestep', /class_embed_type="timestep" is not supported/],
      ['layers_per_block', [2, 2], /layers_per_block=\[2,2\] is invalid/],
      ['cross_attention_dim', [32, 32], /cross_attention_dim=\[32,32\] is invalid/],
      ['mid_block_type', null, /mid_block_type=null is not supported/],
      ['controlnet_conditioning_channel_order', 'rgba', /controlnet_conditioning_channel_order="rgba" is not supported/],
      ['addition_embed_type', 'text', /addition_embed_type="text" is not supported/],
    ];
    for (const [key, value, re] of bad) expect(() => ControlNetModel.fromConfig({ ...base, [key]: value }, 'cn/config.json')).toThrow(re);
    const cn = await ControlNetModel.fromPretrained(CN);
    const unet = await UNet2DConditionModel.fromPretrained(UNET);
    const x = tf.zeros([2, 4, 12, 12]);
    const ehs = tf.zeros([2, 7, 32]);
    const img = tf.zeros([2, 3, 80, 96]);
    expect(() => cn.forward({ sample: x, timestep: 1, encoderHiddenStates: ehs, controlnetCond: img }))
      .toThrow('controlnetCond must be NCHW [2 or 1, 3, 96, 96] (the latents\' size × 8), got [2,3,80,96]');
    const o = cn.forward({ sample: x, timestep: 1, encoderHiddenStates: ehs, controlnetCond: tf.zeros([1, 3, 96, 96]) });
    expect(() => unet.forward({ sample: x, timestep: 1, encoderHiddenStates: ehs, downBlockAdditionalResiduals: o.downBlockResSamples }))
      .toThrow(/come in pairs/);
    expect(() => unet.forward({ sample: x, timestep: 1, encoderHiddenStates: ehs, downBlockAdditionalResiduals: o.downBlockResSamples.slice(1), midBlockAdditionalResidual: o.midBlockResSample }))
      .toThrow('downBlockAdditionalResiduals must hold one tensor per skip connection (6), got 5');
    const swapped = [o.downBlockResSamples[3], ...o.downBlockResSamples.slice(1, 3), o.downBlockResSamples[0], ...o.downBlockResSamples.slice(4)];
    expect(() => unet.forward({ sample: x, timestep: 1, encoderHiddenStates: ehs, downBlockAdditionalResiduals: swapped, midBlockAdditionalResidual: o.midBlockResSample }))
      .toThrow('downBlockAdditionalResiduals[0] must be NCHW [2, 32, 12, 12] (the feature map it is added to), got [2,32,6,6]');
    tf.dispose([x, ehs, img, ...o.downBlockResSamples, o.midBlockResSample]);
    cn.dispose();
    unet.dispose();
  });

  test('tgate convert writes a ControlNet folder that loads and verifies exactly', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'tgate-controlnet-'));
    try {
      const out = path.join(tmp, 'controlnet');
      const r = await convertComponent(CN, out);
      expect(r).toMatchObject({ className: 'ControlNetModel', parameters: (await ControlNetModel.fromPretrained(CN)).numParameters() });
      const v = await verifyComponent(CN, out);
      expect(v).toMatchObject({ className: 'ControlNetModel', relError: 0 });
      expect(await loadModel(out)).toBeInstanceOf(ControlNetModel);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

/** thop's count of one forward at batch 1 (test/support/layer-macs.ts). */
async function countMacs(m: ControlNetModel | UNet2DConditionModel, size: number): Promise<LayerMacs> {
  const s = size / 8;
  const x = tf.randomNormal([1, 4, s, s]);
  const ehs = tf.randomNormal([1, 77, 32]);
  const cond = tf.randomUniform([1, 3, size, size]);
  const { macs, result: out } = await countLayerMacs([m], () => (m instanceof ControlNetModel
    ? m.forward({ sample: x, timestep: 10, encoderHiddenStates: ehs, controlnetCond: cond })
    : m.forward({ sample: x, timestep: 10, encoderHiddenStates: ehs })));
  tf.dispose([x, ehs, cond, ...(out instanceof tf.Tensor ? [out] : [...out.downBlockResSamples, out.midBlockResSample])]);
  return macs;
}
