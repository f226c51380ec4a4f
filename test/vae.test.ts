/** AutoencoderKL against diffusers' goldens (decode, encode latent_dist, intermediates) on every test backend. */
import * as tf from '@tensorflow/tfjs-core';
import { readFile } from 'node:fs/promises';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { fixture, loadFixture, relL2T, TEST_BACKENDS, useBackend } from './support/helpers.js';

const BOUND: Record<string, number> = { cpu: 1e-5, wasm: 1e-4 };
const VAE_DIR = fixture('pipelines/sd15_tiny/vae');

/** Compares recorded intermediates in forward order, then the output; the message names the first divergence. */
function firstDivergence(order: string[], got: Map<string, tf.Tensor>, ref: Record<string, tf.Tensor>, bound: number): string | null {
  for (const name of order) {
    const g = got.get(name);
    if (!g) return `${name}: not recorded`;
    const err = relL2T(g, ref[name]);
    if (!(err <= bound)) return `${name}: rel-L2 ${err.toExponential(3)} > ${bound}`;
  }
  return null;
}

describe.each(TEST_BACKENDS)('AutoencoderKL on %s', (backend) => {
  let ref: Record<string, tf.Tensor>;
  let vae: AutoencoderKL;
  const bound = BOUND[backend] ?? 1e-4;

  beforeAll(async () => {
    await useBackend(backend);
    ref = await loadFixture('goldens/vae_tiny_forward.safetensors');
    vae = await AutoencoderKL.fromPretrained(VAE_DIR);
  });
  afterAll(async () => {
    vae.dispose();
    Object.values(ref).forEach((t) => t.dispose());
    await useBackend('cpu');
  });

  test('decode matches diffusers (intermediates first)', () => {
    const got = new Map<string, tf.Tensor>();
    const out = vae.decode(ref['in.z'], { record: (n, t) => got.set(`inter.${n}`, tf.keep(t.clone())) });
    got.set('decode', out);
    const order = ['inter.post_quant_conv', 'inter.decoder.conv_in', 'inter.decoder.mid_block', 'inter.decoder.up_blocks.0', 'decode'];
    const errs = order.map((n) => `${n}=${relL2T(got.get(n)!, ref[n]).toExponential(2)}`);
    console.log(`[${backend}] vae decode rel-L2: ${errs.join(' ')}`);
    expect(firstDivergence(order, got, ref, bound)).toBeNull();
    got.forEach((t) => t.dispose());
  });

  test('encode latent_dist matches diffusers; sample uses the injected noise', () => {
    const dist = vae.encode(ref['in.x']);
    const errs = { mean: relL2T(dist.mean, ref['encode.mean']), logvar: relL2T(dist.logvar, ref['encode.logvar']), std: relL2T(dist.std, ref['encode.std']) };
    console.log(`[${backend}] vae encode rel-L2: ${JSON.stringify(errs)}`);
    for (const [k, e] of Object.entries(errs)) expect([k, e <= bound]).toEqual([k, true]);
    const noise = tf.randomNormal(dist.mean.shape, 0, 1, 'float32', 3);
    const s = dist.sample(noise);
    const want = tf.tidy(() => tf.add(ref['encode.mean'], tf.mul(ref['encode.std'], noise)));
    expect(relL2T(s, want)).toBeLessThanOrEqual(bound);
    expect(() => dist.sample(tf.zeros([1, 4, 4, 4]))).toThrow(/noise shape/);
    [noise, s, want].forEach((t) => t.dispose());
    dist.dispose();
  });

  test('no tensor leak over repeated decode/encode', () => {
    // Small crops keep this cheap on the cpu backend; the code path is the same.
    const z = ref['in.z'].slice([0, 0, 0, 0], [1, 4, 4, 4]);
    const x = ref['in.x'].slice([0, 0, 0, 0], [1, 3, 16, 16]);
    const run = () => {
      vae.decode(z).dispose();
      vae.encode(x).dispose();
    };
    run();
    const before = tf.memory().numTensors;
    run();
    run();
    expect(tf.memory().numTensors).toBe(before);
    z.dispose();
    x.dispose();
  });
});

describe('AutoencoderKL config and shapes', () => {
  test('full-size SD VAE builds without weights with the exact diffusers parameter count', async () => {
    const cfg = JSON.parse(await readFile(fixture('configs/sd_vae.json'), 'utf8'));
    const counts = JSON.parse(await readFile(fixture('configs/param_counts.json'), 'utf8'));
    const before = tf.memory().numTensors;
    const vae = AutoencoderKL.fromConfig(cfg);
    expect(vae.numParameters()).toBe(counts.sd_vae);
    expect(tf.memory().numTensors).toBe(before);
    expect(vae.attnProcessors().size).toBe(2);
    expect(vae.config.scalingFactor).toBeCloseTo(0.18215);
  });

  test('unsupported config values are errors naming key and value', () => {
    const base = { block_out_channels: [16, 32], norm_num_groups: 8 };
    expect(() => AutoencoderKL.fromConfig({ ...base, down_block_types: ['DownEncoderBlock2D', 'SomethingElse'] })).toThrow(/down_block_types.*SomethingElse/);
    expect(() => AutoencoderKL.fromConfig({ ...base, up_block_types: ['UpDecoderBlock2D'] })).toThrow(/up_block_types/);
    expect(() => AutoencoderKL.fromConfig({ ...base, act_fn: 'tanhshrink' })).toThrow(/act_fn.*tanhshrink/);
    expect(() => AutoencoderKL.fromConfig({ ...base, norm_num_groups: 5 })).toThrow(/norm_num_groups/);
    expect(() => AutoencoderKL.fromConfig({ ...base, _class_name: 'AutoencoderTiny' })).toThrow(/AutoencoderTiny/);
    // keys that only matter to the pipeline are accepted
    const v = AutoencoderKL.fromConfig({ ...base, shift_factor: 0.1159, latents_mean: [0, 0, 0, 0], latents_std: [1, 1, 1, 1], force_upcast: false, use_quant_conv: false, use_post_quant_conv: false });
    expect(v.quant_conv).toBeUndefined();
    expect(v.config.shiftFactor).toBeCloseTo(0.1159);
  });

  test('wrong input shapes are clear errors; non-square latents work', () => {
    const vae = AutoencoderKL.fromConfig({ block_out_channels: [8, 8], norm_num_groups: 4, layers_per_block: 1 });
    vae.initRandom(1);
    const bad = [tf.zeros([1, 3, 4, 4]), tf.zeros([1, 8, 8])];
    expect(() => vae.decode(bad[0])).toThrow(/decode.*4 channels.*\[1,3,4,4\]/);
    expect(() => vae.encode(bad[1])).toThrow(/encode.*3 channels/);
    bad.forEach((t) => t.dispose());
    const z = tf.randomNormal([2, 4, 3, 5], 0, 1, 'float32', 1);
    const img = vae.decode(z);
    expect(img.shape).toEqual([2, 3, 6, 10]);
    const d = vae.encode(img);
    expect(d.mean.shape).toEqual([2, 4, 3, 5]);
    [z, img].forEach((t) => t.dispose());
    d.dispose();
    vae.dispose();
  });
});
