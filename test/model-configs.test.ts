/**
 * Each model's config reading (through src/io/config.ts): real configs of the largest supported models pass
 * the bounds; missing, mistyped and out-of-bounds keys fail naming the file, the class and the key.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from './support/helpers.js';
import { ConfigError } from '../src/io/config.js';
import { resolveUNetConfig } from '../src/models/unet-2d-condition-config.js';
import { resolveAutoencoderKLConfig } from '../src/models/autoencoder-kl.js';
import { resolvePixArtConfig } from '../src/models/pixart-transformer.js';
import { parseCLIPTextConfig } from '../src/models/clip-text.js';
import { parseT5Config } from '../src/models/t5-encoder.js';
import { loadModel } from '../src/models/load.js';

type Cfg = Record<string, unknown>;
const readJson = (rel: string): Cfg => JSON.parse(fs.readFileSync(fixture(rel), 'utf8'));
const FILE = '/models/m/config.json';

/** The ConfigError `f` throws (fails the test when it throws nothing or something else). */
function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e;
  }
  throw new Error('expected a ConfigError');
}

// transformers 4.45 configs of the largest text encoders the pipelines use (values from their config.json).
const CLIP_BIGG = {
  architectures: ['CLIPTextModelWithProjection'], vocab_size: 49408, hidden_size: 1280, intermediate_size: 5120, num_hidden_layers: 32,
  num_attention_heads: 20, max_position_embeddings: 77, hidden_act: 'gelu', layer_norm_eps: 1e-5, eos_token_id: 2, projection_dim: 1280,
};
const T5_XXL = {
  architectures: ['T5EncoderModel'], vocab_size: 32128, d_model: 4096, d_kv: 64, d_ff: 10240, num_layers: 24, num_heads: 64,
  relative_attention_num_buckets: 32, relative_attention_max_distance: 128, layer_norm_epsilon: 1e-6, feed_forward_proj: 'gated-gelu',
  is_decoder: false,
};

interface Case {
  cls: string;
  read: (raw: Cfg, file?: string) => unknown;
  base: Cfg;
  /** A key whose absence is an error (null: every key has a default). */
  required: string | null;
  wrongType: [string, unknown];
  outOfBounds: [string, unknown];
}

const CASES: Case[] = [
  {
    cls: 'UNet2DConditionModel', read: resolveUNetConfig, base: readJson('configs/sdxl_unet.json'), required: 'addition_time_embed_dim',
    wrongType: ['layers_per_block', '2'], outOfBounds: ['layers_per_block', 100000],
  },
  {
    cls: 'AutoencoderKL', read: resolveAutoencoderKLConfig, base: readJson('configs/sd_vae.json'), required: null,
    wrongType: ['scaling_factor', '0.18'], outOfBounds: ['block_out_channels', [128, 256, 512, 1e9]],
  },
  {
    cls: 'PixArtTransformer2DModel', read: resolvePixArtConfig, base: readJson('configs/pixart_alpha_1024_transformer.json'), required: 'patch_size',
    wrongType: ['num_layers', true], outOfBounds: ['num_layers', 1e7],
  },
  {
    cls: 'CLIPTextModelWithProjection', read: (c, f) => parseCLIPTextConfig(c, f, 'CLIPTextModelWithProjection'), base: CLIP_BIGG, required: null,
    wrongType: ['hidden_size', [1280]], outOfBounds: ['vocab_size', 2 ** 31],
  },
  {
    cls: 'T5EncoderModel', read: parseT5Config, base: T5_XXL, required: null,
    wrongType: ['d_model', 4096.5], outOfBounds: ['num_layers', 0],
  },
];

describe.each(CASES)('$cls config', ({ cls, read, base, required, wrongType, outOfBounds }) => {
  test('the real full-size config is within the bounds', () => {
    expect(() => read(base, FILE)).not.toThrow();
  });

  test('a null or non-object config is a clear error', () => {
    for (const raw of [null, [], 'config']) {
      const e = configError(() => read(raw as never, FILE));
      expect(e.message).toMatch(new RegExp(`^${FILE} \\(${cls}\\): the config is (null|an array|string), expected a JSON object`));
    }
  });

  test('a wrong type names the file, the class, the key and the value', () => {
    const [key, value] = wrongType;
    const e = configError(() => read({ ...base, [key]: value }, FILE));
    expect(e.message.startsWith(`${FILE} (${cls}): ${key}=`)).toBe(true);
    expect(e.message).toMatch(/is invalid: expected /);
    expect([e.file, e.className, e.key]).toEqual([FILE, cls, key]);
  });

  test('a value out of bounds is refused before anything is built', () => {
    const [key, value] = outOfBounds;
    const e = configError(() => read({ ...base, [key]: value }, FILE));
    expect(e.message).toMatch(new RegExp(`^${FILE.replace(/\//g, '\\/')} \\(${cls}\\): ${key}=\\S+( \\(entry \\d+\\))? is invalid: expected an integer (in|≥)`));
  });

  test(required ? `a missing required key is named as missing (${required})` : 'absent keys take the class defaults', () => {
    if (required) {
      const rest = { ...base };
      delete rest[required];
      expect(configError(() => read(rest, FILE)).message).toMatch(new RegExp(`^${FILE} \\(${cls}\\): required key "${required}" is missing`));
    } else {
      expect(() => read({}, FILE)).not.toThrow();
    }
  });

  test('without a file name the error still names the class', () => {
    expect(configError(() => read({ ...base, [wrongType[0]]: wrongType[1] })).message.startsWith(`${cls} config: ${wrongType[0]}=`)).toBe(true);
  });
});

describe('cross-key checks and defaults', () => {
  test('UNet: a default that cannot fit the block count asks for the key', () => {
    expect(configError(() => resolveUNetConfig({ down_block_types: ['DownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'UpBlock2D'] })).message)
      .toMatch(/block_out_channels is not set, and its default \[320,640,1280,1280\] does not fit .*: set block_out_channels/);
  });

  test('a huge offending value is cut to ~200 characters in the message', () => {
    const m = configError(() => resolveUNetConfig({ block_out_channels: 'x'.repeat(1e6) }, FILE)).message;
    expect(m.length).toBeLessThan(400);
  });

  test('T5 and CLIP keep transformers\' defaults; UNet, VAE and PixArt keep diffusers\'', () => {
    expect(parseT5Config({})).toMatchObject({ vocabSize: 32128, dModel: 512, numLayers: 6, denseActFn: 'relu', isGatedAct: false });
    expect(parseCLIPTextConfig({})).toMatchObject({ vocabSize: 49408, hiddenSize: 512, numHiddenLayers: 12, eosTokenId: 49407, projectionDim: 512 });
    expect(resolveUNetConfig({})).toMatchObject({ blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: [2, 2, 2, 2], crossAttentionDim: [1280, 1280, 1280, 1280] });
    expect(resolveAutoencoderKLConfig({})).toMatchObject({ blockOutChannels: [64], scalingFactor: 0.18215, forceUpcast: true });
    expect(resolvePixArtConfig({ sample_size: 128, patch_size: 2, in_channels: 4 })).toMatchObject({ numLayers: 28, outChannels: 8, crossAttentionDim: 1152 });
  });

  test('a full CLIPConfig reads text_config, and its errors say so', () => {
    const full = { model_type: 'clip', projection_dim: 768, text_config: { hidden_size: 768, num_attention_heads: 12 } };
    expect(parseCLIPTextConfig(full)).toMatchObject({ hiddenSize: 768, projectionDim: 768 });
    expect(configError(() => parseCLIPTextConfig({ ...full, text_config: { hidden_size: 768, num_attention_heads: 5 } }, FILE)).message)
      .toBe(`${FILE} (CLIPTextModel text_config): num_attention_heads=5 does not divide hidden_size=768`);
  });
});

describe('loading names the config file', () => {
  let dir: string;
  beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tgate-config-')); });
  afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  const write = (name: string, text: string): string => {
    const d = path.join(dir, name);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'config.json'), text);
    return d;
  };

  test('a bad key, a null config and an unknown class each name <dir>/config.json', async () => {
    const unet = { ...readJson('pipelines/sd15_tiny/unet/config.json'), layers_per_block: 1e6 };
    const bad = write('bad-key', JSON.stringify(unet));
    await expect(loadModel(bad)).rejects.toThrow(`${bad}/config.json (UNet2DConditionModel): layers_per_block=1000000 is invalid: expected an integer in 1…64`);
    const nul = write('null', 'null');
    await expect(loadModel(nul)).rejects.toThrow(`${path.join(nul, 'config.json')} holds null, not a JSON object of settings`);
    const odd = write('odd-class', JSON.stringify({ _class_name: 'UNet3DConditionModel' }));
    await expect(loadModel(odd)).rejects.toThrow(new RegExp(`^${odd}/config.json: unknown _class_name "UNet3DConditionModel" \\(supported: UNet2DConditionModel, `));
  });
});
