/**
 * diffusers `AutoencoderKL` (the SD / SDXL / PixArt VAE): Encoder → quant_conv → diagonal Gaussian, and
 * post_quant_conv → Decoder. Channels-last inside; `encode`/`decode` take and return NCHW like diffusers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../layers/conv.js';
import { GroupNorm } from '../layers/norm.js';
import { Attention } from '../attention/attention.js';
import { ResnetBlock2D, Downsample2D, Upsample2D } from '../layers/resnet.js';
import { ACTIVATION_NAMES, activation } from '../layers/activations.js';
import type { AttnContext, AttnProcessor } from '../attention/processor.js';
import { attnProcessors, setAttnProcessor } from '../attention/registry.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { ConfigReader, LIMITS, checkParameterCount, rule, type Rule } from '../io/config.js';

export interface AutoencoderKLConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  actFn: string;
  latentChannels: number;
  normNumGroups: number;
  sampleSize: number | number[];
  /** The pipeline divides latents by this before `decode` (and multiplies after `encode`). */
  scalingFactor: number;
  shiftFactor: number | null;
  latentsMean: number[] | null;
  latentsStd: number[] | null;
  /** Accepted for config fidelity: we always compute in fp32, so it changes nothing. */
  forceUpcast: boolean;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
}

/** diffusers v0.30.3's AutoencoderKL keys and defaults, checked; errors name `file`, the class and the key. */
export function resolveAutoencoderKLConfig(raw: Record<string, unknown>, file?: string): AutoencoderKLConfig {
  const r = ConfigReader.of(raw, 'AutoencoderKL', file);
  r.oneOf('_class_name', ['AutoencoderKL'], { default: 'AutoencoderKL' });
  const channels = { min: 1, max: LIMITS.channels };
  const boc = r.list<number>('block_out_channels', rule.int(1, LIMITS.width), { default: [64], minLength: 1, maxLength: LIMITS.blocks });
  const n = boc.length;
  r.list('down_block_types', rule.oneOf(['DownEncoderBlock2D']), { default: new Array(n).fill('DownEncoderBlock2D'), minLength: n, maxLength: n });
  r.list('up_block_types', rule.oneOf(['UpDecoderBlock2D']), { default: new Array(n).fill('UpDecoderBlock2D'), minLength: n, maxLength: n });
  const groups = r.int('norm_num_groups', { default: 32, min: 1, max: LIMITS.width });
  const odd = boc.find((c) => c % groups);
  if (odd !== undefined) throw r.fail('norm_num_groups', `does not divide block_out_channels entry ${odd}`);
  const latentChannels = r.int('latent_channels', { default: 4, ...channels });
  const perLatentChannel = (entry: Rule): Rule => rule.list(entry, latentChannels, latentChannels);
  return {
    inChannels: r.int('in_channels', { default: 3, ...channels }),
    outChannels: r.int('out_channels', { default: 3, ...channels }),
    blockOutChannels: boc,
    layersPerBlock: r.int('layers_per_block', { default: 1, min: 1, max: LIMITS.layersPerBlock }),
    actFn: r.oneOf('act_fn', ACTIVATION_NAMES, { default: 'silu' }),
    latentChannels,
    normNumGroups: groups,
    sampleSize: r.get('sample_size', rule.either(rule.int(1, LIMITS.imageSize), rule.list(rule.int(1, LIMITS.imageSize), 1, 2)), { default: 32 }) as number | number[],
    // Latents are divided by these: 0 (or a negative scale) would give an infinite or inverted image, not an error.
    scalingFactor: r.number('scaling_factor', { default: 0.18215, above: 0 }),
    shiftFactor: r.number('shift_factor', { default: null, nullable: true }),
    latentsMean: r.get('latents_mean', perLatentChannel(rule.number()), { default: null, nullable: true }) as number[] | null,
    latentsStd: r.get('latents_std', perLatentChannel(rule.number({ above: 0 })), { default: null, nullable: true }) as number[] | null,
    forceUpcast: r.bool('force_upcast', { default: true }),
    useQuantConv: r.bool('use_quant_conv', { default: true }),
    usePostQuantConv: r.bool('use_post_quant_conv', { default: true }),
    midBlockAddAttention: r.bool('mid_block_add_attention', { default: true }),
  };
}

/** Records intermediate outputs (NCHW for feature maps); the callee must clone what it keeps. */
export type RecordFn = (name: string, t: tf.Tensor) => void;

export interface VaeCallOptions {
  attnContext?: AttnContext;
  record?: RecordFn;
}

const toNCHW = (x: tf.Tensor): tf.Tensor => x.transpose([0, 3, 1, 2]);
const toNHWC = (x: tf.Tensor): tf.Tensor4D => x.transpose([0, 2, 3, 1]) as tf.Tensor4D;

/** diffusers UNetMidBlock2D without time embedding: resnet, (attention, resnet) × 1. */
export class UNetMidBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Attention>;

  constructor(channels: number, groups: number, act: string, addAttention: boolean, eps = 1e-6) {
    super();
    const resnet = () => new ResnetBlock2D({ inChannels: channels, outChannels: channels, groups, eps, nonlinearity: act });
    this.resnets = this.child('resnets', new ModuleList([resnet(), resnet()]));
    // attention_head_dim = channels, so one head spanning all channels (diffusers' former AttentionBlock).
    this.attentions = this.child('attentions', new ModuleList(addAttention ? [new Attention({
      queryDim: channels, heads: 1, dimHead: channels, bias: true, outBias: true, residualConnection: true,
      rescaleOutputFactor: 1, normNumGroups: groups, eps,
    })] : []));
  }

  forward(x: tf.Tensor4D, ctx: AttnContext): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets.at(0).forward(x);
      if (this.attentions.length) h = this.attentions.at(0).forward(h, null, null, ctx) as tf.Tensor4D;
      return this.resnets.at(1).forward(h);
    });
  }
}

class DownEncoderBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly downsamplers?: ModuleList<Downsample2D>;
  constructor(inC: number, outC: number, layers: number, groups: number, act: string, addDownsample: boolean) {
    super();
    const rs: ResnetBlock2D[] = [];
    for (let i = 0; i < layers; i++) rs.push(new ResnetBlock2D({ inChannels: i === 0 ? inC : outC, outChannels: outC, groups, eps: 1e-6, nonlinearity: act }));
    this.resnets = this.child('resnets', new ModuleList(rs));
    // The VAE downsamples with padding 0, i.e. diffusers' asymmetric (0,1,0,1) pad before a valid conv.
    if (addDownsample) this.downsamplers = this.child('downsamplers', new ModuleList([new Downsample2D(outC, true, outC, 0)]));
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const r of this.resnets.items) h = r.forward(h);
      return this.downsamplers ? this.downsamplers.at(0).forward(h) : h;
    });
  }
}

class UpDecoderBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly upsamplers?: ModuleList<Upsample2D>;
  constructor(inC: number, outC: number, layers: number, groups: number, act: string, addUpsample: boolean) {
    super();
    const rs: ResnetBlock2D[] = [];
    for (let i = 0; i < layers; i++) rs.push(new ResnetBlock2D({ inChannels: i === 0 ? inC : outC, outChannels: outC, groups, eps: 1e-6, nonlinearity: act }));
    this.resnets = this.child('resnets', new ModuleList(rs));
    if (addUpsample) this.upsamplers = this.child('upsamplers', new ModuleList([new Upsample2D(outC, true, outC)]));
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const r of this.resnets.items) h = r.forward(h);
      return this.upsamplers ? this.upsamplers.at(0).forward(h) : h;
    });
  }
}

export class Encoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks: ModuleList<DownEncoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(c: AutoencoderKLConfig) {
    super();
    const ch = c.blockOutChannels;
    const last = ch[ch.length - 1];
    this.conv_in = this.child('conv_in', new Conv2d(c.inChannels, ch[0], 3, 1, 1));
    this.down_blocks = this.child('down_blocks', new ModuleList(ch.map((out, i) =>
      new DownEncoderBlock2D(i === 0 ? ch[0] : ch[i - 1], out, c.layersPerBlock, c.normNumGroups, c.actFn, i < ch.length - 1))));
    this.mid_block = this.child('mid_block', new UNetMidBlock2D(last, c.normNumGroups, c.actFn, c.midBlockAddAttention));
    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(c.normNumGroups, last, 1e-6));
    this.act = activation(c.actFn);
    this.conv_out = this.child('conv_out', new Conv2d(last, 2 * c.latentChannels, 3, 1, 1));
  }

  forward(x: tf.Tensor4D, ctx: AttnContext, rec: (n: string, t: tf.Tensor4D) => void): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv_in.forward(x);
      rec('conv_in', h);
      this.down_blocks.items.forEach((b, i) => { h = b.forward(h); rec(`down_blocks.${i}`, h); });
      h = this.mid_block.forward(h, ctx);
      rec('mid_block', h);
      h = this.conv_norm_out.forwardAct(h, this.act);
      return this.conv_out.forward(h);
    });
  }
}

export class Decoder extends Module {
  readonly conv_in: Conv2d;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: ModuleList<UpDecoderBlock2D>;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(c: AutoencoderKLConfig) {
    super();
    const rev = [...c.blockOutChannels].reverse();
    this.conv_in = this.child('conv_in', new Conv2d(c.latentChannels, rev[0], 3, 1, 1));
    this.mid_block = this.child('mid_block', new UNetMidBlock2D(rev[0], c.normNumGroups, c.actFn, c.midBlockAddAttention));
    this.up_blocks = this.child('up_blocks', new ModuleList(rev.map((out, i) =>
      new UpDecoderBlock2D(i === 0 ? rev[0] : rev[i - 1], out, c.layersPerBlock + 1, c.normNumGroups, c.actFn, i < rev.length - 1))));
    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(c.normNumGroups, c.blockOutChannels[0], 1e-6));
    this.act = activation(c.actFn);
    this.conv_out = this.child('conv_out', new Conv2d(c.blockOutChannels[0], c.outChannels, 3, 1, 1));
  }

  forward(z: tf.Tensor4D, ctx: AttnContext, rec: (n: string, t: tf.Tensor4D) => void): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv_in.forward(z);
      rec('conv_in', h);
      h = this.mid_block.forward(h, ctx);
      rec('mid_block', h);
      this.up_blocks.items.forEach((b, i) => { h = b.forward(h); rec(`up_blocks.${i}`, h); });
      h = this.conv_norm_out.forwardAct(h, this.act);
      return this.conv_out.forward(h);
    });
  }
}

/**
 * diffusers DiagonalGaussianDistribution (`latent_dist`), NCHW. Owns its tensors: call `dispose()`.
 * `logvar` is clamped to [-30, 20] as in diffusers.
 */
export class DiagonalGaussian {
  constructor(readonly mean: tf.Tensor4D, readonly logvar: tf.Tensor4D, readonly std: tf.Tensor4D) {}

  /** mean + std · noise; `noise` (same shape as mean) makes it reproducible against a reference RNG. */
  sample(noise?: tf.Tensor, seed?: number): tf.Tensor4D {
    if (noise && (noise.rank !== 4 || noise.shape.some((d, i) => d !== this.mean.shape[i]))) {
      throw new Error(`latent_dist.sample: noise shape [${noise.shape}] must equal the mean's [${this.mean.shape}]`);
    }
    return tf.tidy(() => tf.add(this.mean, tf.mul(this.std, noise ?? tf.randomNormal(this.mean.shape, 0, 1, 'float32', seed))) as tf.Tensor4D);
  }

  /** The distribution's mode (= mean), as a new tensor. */
  mode(): tf.Tensor4D { return this.mean.clone(); }

  dispose(): void {
    this.mean.dispose();
    this.logvar.dispose();
    this.std.dispose();
  }
}

export class AutoencoderKL extends Module {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv?: Conv2d;
  readonly post_quant_conv?: Conv2d;

  constructor(readonly config: AutoencoderKLConfig) {
    super();
    const c = config;
    if (!c.blockOutChannels.length) throw new Error('AutoencoderKL: block_out_channels must not be empty');
    activation(c.actFn); // fails early, naming the activation, if unsupported
    this.encoder = this.child('encoder', new Encoder(c));
    this.decoder = this.child('decoder', new Decoder(c));
    if (c.useQuantConv) this.quant_conv = this.child('quant_conv', new Conv2d(2 * c.latentChannels, 2 * c.latentChannels, 1));
    if (c.usePostQuantConv) this.post_quant_conv = this.child('post_quant_conv', new Conv2d(c.latentChannels, c.latentChannels, 1));
  }

  /** Validates a diffusers `config.json` (AutoencoderKL) and builds the model (weights not allocated). */
  static fromConfig(cfg: Record<string, unknown>, file?: string): AutoencoderKL {
    return checkParameterCount(new AutoencoderKL(resolveAutoencoderKLConfig(cfg, file)), 'AutoencoderKL', file);
  }

  /** Loads a diffusers `vae/` folder (config.json + safetensors, optional variant such as "fp16"). */
  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<AutoencoderKL> {
    return buildAndLoad(dir, (c, file) => AutoencoderKL.fromConfig(c, file), opts);
  }

  private checkInput(x: tf.Tensor, channels: number, what: string): void {
    if (x.rank !== 4 || x.shape[1] !== channels) {
      throw new Error(`AutoencoderKL.${what}: expected NCHW input with ${channels} channels, got shape [${x.shape}]`);
    }
  }

  private recorder(prefix: string, record?: RecordFn): (n: string, t: tf.Tensor4D) => void {
    return record ? (n, t) => record(prefix + n, toNCHW(t)) : () => undefined;
  }

  /**
   * Decodes latents [B, latent_channels, h, w] (used as given: the pipeline divides by `scalingFactor`
   * first) to an image [B, out_channels, 8h, 8w] for the usual 4-block VAE.
   */
  decode(latents: tf.Tensor, opts: VaeCallOptions = {}): tf.Tensor4D {
    this.checkInput(latents, this.config.latentChannels, 'decode');
    const ctx = opts.attnContext ?? {};
    return tf.tidy(() => {
      let z = toNHWC(latents);
      if (this.post_quant_conv) {
        z = this.post_quant_conv.forward(z);
        opts.record?.('post_quant_conv', toNCHW(z));
      }
      return toNCHW(this.decoder.forward(z, ctx, this.recorder('decoder.', opts.record))) as tf.Tensor4D;
    });
  }

  /** Encodes an image [B, in_channels, H, W] (values in [-1, 1]) to the latent distribution. */
  encode(x: tf.Tensor, opts: VaeCallOptions = {}): DiagonalGaussian {
    this.checkInput(x, this.config.inChannels, 'encode');
    const ctx = opts.attnContext ?? {};
    const [mean, logvar, std] = tf.tidy(() => {
      let m = this.encoder.forward(toNHWC(x), ctx, this.recorder('encoder.', opts.record));
      if (this.quant_conv) {
        m = this.quant_conv.forward(m);
        opts.record?.('quant_conv', toNCHW(m));
      }
      const [mu, lv] = tf.split(toNCHW(m), 2, 1);
      const lvc = tf.clipByValue(lv, -30, 20);
      return [mu, lvc, tf.exp(tf.mul(lvc, 0.5))] as tf.Tensor4D[];
    });
    return new DiagonalGaussian(mean, logvar, std);
  }

  attnProcessors(): Map<string, AttnProcessor> { return attnProcessors(this); }
  setAttnProcessor(p: AttnProcessor | Record<string, AttnProcessor>): void { setAttnProcessor(this, p); }
}
