/**
 * transformers' T5EncoderModel (PixArt-α's text encoder, T5 v1.1 with gated-gelu). Keys are transformers'
 * state-dict keys: `shared.weight`, `encoder.block.N.layer.0.SelfAttention.q.weight`, … The input embedding
 * `encoder.embed_tokens.weight` is tied to `shared.weight`: one tensor here, loaded from whichever the
 * checkpoint holds.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, type WeightSource } from '../nn/module.js';
import { Linear } from '../layers/linear.js';
import { RMSNorm } from '../layers/norm.js';
import { ACTIVATION_NAMES, activation } from '../layers/activations.js';
import { attnProcessors, setAttnProcessor } from '../attention/registry.js';
import { AttentionModule, type AttnProcessor, type AttnProjections } from '../attention/processor.js';
import { Embedding } from '../layers/embeddings.js';
import { MASK_MIN, checkVocab, readIdRows, type TokenIds } from './text-inputs.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { ConfigReader, LIMITS, checkParameterCount } from '../io/config.js';

export interface T5EncoderConfig {
  vocabSize: number;
  dModel: number;
  dKv: number;
  dFf: number;
  numLayers: number;
  numHeads: number;
  relativeAttentionNumBuckets: number;
  relativeAttentionMaxDistance: number;
  layerNormEpsilon: number;
  /** The activation of the feed-forward (transformers' dense_act_fn as derived from feed_forward_proj). */
  denseActFn: string;
  isGatedAct: boolean;
}

/** Parses and validates a transformers T5Config for the encoder (transformers 4.45 defaults). */
export function parseT5Config(raw: Record<string, unknown>, file?: string): T5EncoderConfig {
  const r = ConfigReader.of(raw, 'T5EncoderModel', file);
  const int = (key: string, dflt: number, max: number, min = 1): number => r.int(key, { default: dflt, min, max });
  const ff = r.string('feed_forward_proj', { default: 'relu' });
  // transformers: "<act>" or "gated-<act>"; "gated-gelu" means the tanh-approximated gelu_new.
  const parts = ff.split('-');
  const gated = parts[0] === 'gated';
  if ((parts.length > 1 && !gated) || parts.length > 2) {
    throw r.fail('feed_forward_proj', 'is not supported (expected "<act>" or "gated-<act>", e.g. "relu", "gated-gelu")');
  }
  const act = ff === 'gated-gelu' ? 'gelu_new' : parts[parts.length - 1];
  if (!(ACTIVATION_NAMES as readonly string[]).includes(act)) {
    throw r.fail('feed_forward_proj', `is not supported (activation "${act}" is not one of ${ACTIVATION_NAMES.join(', ')})`);
  }
  if (raw.is_decoder === true) throw r.fail('is_decoder', 'is not supported (only the encoder is implemented)');
  return {
    vocabSize: int('vocab_size', 32128, LIMITS.vocab), dModel: int('d_model', 512, LIMITS.width), dKv: int('d_kv', 64, LIMITS.headDim),
    dFf: int('d_ff', 2048, LIMITS.innerWidth), numLayers: int('num_layers', 6, LIMITS.layers), numHeads: int('num_heads', 8, LIMITS.heads),
    relativeAttentionNumBuckets: int('relative_attention_num_buckets', 32, 1024, 2),
    relativeAttentionMaxDistance: int('relative_attention_max_distance', 128, 1 << 20),
    layerNormEpsilon: r.number('layer_norm_epsilon', { default: 1e-6, above: 0 }),
    denseActFn: act, isGatedAct: gated,
  };
}

/**
 * T5's bucket for `relative = key_pos − query_pos`. Bucket arithmetic for far positions mirrors torch's
 * float32 ops (log, divide, multiply, truncate) so bucket edges land where transformers puts them.
 */
export function relativePositionBucket(relative: number, bidirectional: boolean, numBuckets: number, maxDistance: number): number {
  let bucket = 0;
  let nb = numBuckets;
  let rp = relative;
  if (bidirectional) {
    nb = Math.floor(nb / 2);
    if (rp > 0) bucket += nb;
    rp = Math.abs(rp);
  } else {
    rp = -Math.min(rp, 0);
  }
  const maxExact = Math.floor(nb / 2);
  if (rp < maxExact) return bucket + rp;
  const f = Math.fround;
  const logRatio = f(Math.log(f(f(rp) / maxExact)));
  const scaled = f(f(logRatio / f(Math.log(maxDistance / maxExact))) * (nb - maxExact));
  const large = maxExact + Math.trunc(scaled);
  return bucket + Math.min(large, nb - 1);
}

/**
 * transformers T5Attention (encoder self-attention). No scaling of q kᵀ (the 1/√d is folded into its
 * initialisation); the relative position bias, computed once by block 0, comes in as the bias.
 */
class T5Attention extends AttentionModule {
  readonly heads: number;
  readonly scale = 1;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly relative_attention_bias?: Embedding;
  constructor(readonly c: T5EncoderConfig, hasRelativeBias: boolean) {
    super();
    this.heads = c.numHeads;
    const inner = c.numHeads * c.dKv;
    this.q = this.child('q', new Linear(c.dModel, inner, false));
    this.k = this.child('k', new Linear(c.dModel, inner, false));
    this.v = this.child('v', new Linear(c.dModel, inner, false));
    this.o = this.child('o', new Linear(inner, c.dModel, false));
    if (hasRelativeBias) this.relative_attention_bias = this.child('relative_attention_bias', new Embedding(c.relativeAttentionNumBuckets, c.numHeads));
  }

  /** Position bias [1, heads, L, L] from the bucket table. */
  computeBias(length: number): tf.Tensor4D {
    if (!this.relative_attention_bias) throw new Error('T5: only block 0 holds relative_attention_bias');
    const idx = new Int32Array(length * length);
    for (let i = 0; i < length; i++) {
      for (let j = 0; j < length; j++) {
        idx[i * length + j] = relativePositionBucket(j - i, true, this.c.relativeAttentionNumBuckets, this.c.relativeAttentionMaxDistance);
      }
    }
    return tf.tidy(() => this.relative_attention_bias!.forward(tf.tensor1d(idx, 'int32'))
      .reshape([length, length, this.c.numHeads]).transpose([2, 0, 1]).expandDims(0) as tf.Tensor4D);
  }

  protected projections(): AttnProjections {
    return { q: this.q, k: this.k, v: this.v, out: this.o };
  }
}

class T5LayerSelfAttention extends Module {
  readonly SelfAttention: T5Attention;
  readonly layer_norm: RMSNorm;
  constructor(c: T5EncoderConfig, hasRelativeBias: boolean) {
    super();
    this.SelfAttention = this.child('SelfAttention', new T5Attention(c, hasRelativeBias));
    this.layer_norm = this.child('layer_norm', new RMSNorm(c.dModel, c.layerNormEpsilon));
  }
  forward(x: tf.Tensor, bias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.SelfAttention.forward(this.layer_norm.forward(x), null, bias)));
  }
}

/** T5DenseActDense (`wi`, `wo`) or T5DenseGatedActDense (`wi_0`, `wi_1`, `wo`: act(wi_0 x) · wi_1 x). */
class T5DenseReluDense extends Module {
  readonly wi?: Linear;
  readonly wi_0?: Linear;
  readonly wi_1?: Linear;
  readonly wo: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  constructor(c: T5EncoderConfig) {
    super();
    if (c.isGatedAct) {
      this.wi_0 = this.child('wi_0', new Linear(c.dModel, c.dFf, false));
      this.wi_1 = this.child('wi_1', new Linear(c.dModel, c.dFf, false));
    } else {
      this.wi = this.child('wi', new Linear(c.dModel, c.dFf, false));
    }
    this.wo = this.child('wo', new Linear(c.dFf, c.dModel, false));
    this.act = activation(c.denseActFn);
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = this.wi ? this.act(this.wi.forward(x)) : tf.mul(this.act(this.wi_0!.forward(x)), this.wi_1!.forward(x));
      return this.wo.forward(h);
    });
  }
}

class T5LayerFF extends Module {
  readonly DenseReluDense: T5DenseReluDense;
  readonly layer_norm: RMSNorm;
  constructor(c: T5EncoderConfig) {
    super();
    this.DenseReluDense = this.child('DenseReluDense', new T5DenseReluDense(c));
    this.layer_norm = this.child('layer_norm', new RMSNorm(c.dModel, c.layerNormEpsilon));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.DenseReluDense.forward(this.layer_norm.forward(x))));
  }
}

class T5Block extends Module {
  readonly attn: T5LayerSelfAttention;
  readonly ff: T5LayerFF;
  constructor(c: T5EncoderConfig, hasRelativeBias: boolean) {
    super();
    this.attn = new T5LayerSelfAttention(c, hasRelativeBias);
    this.ff = new T5LayerFF(c);
    this.child('layer', new ModuleList<Module>([this.attn, this.ff]));
  }
  forward(x: tf.Tensor, bias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.ff.forward(this.attn.forward(x, bias)));
  }
}

class T5Stack extends Module {
  readonly block: ModuleList<T5Block>;
  readonly final_layer_norm: RMSNorm;
  constructor(c: T5EncoderConfig) {
    super();
    this.block = this.child('block', new ModuleList(Array.from({ length: c.numLayers }, (_, i) => new T5Block(c, i === 0))));
    this.final_layer_norm = this.child('final_layer_norm', new RMSNorm(c.dModel, c.layerNormEpsilon));
  }
}

const SHARED = 'shared.weight';
const TIED = 'encoder.embed_tokens.weight';

/** Presents `encoder.embed_tokens.weight` as `shared.weight` (they are one tensor in transformers). */
class TiedEmbeddingSource implements WeightSource {
  private readonly alias: string;
  readonly name: string;
  readonly layoutConverted?: boolean;
  constructor(private readonly src: WeightSource) {
    this.name = src.name;
    this.layoutConverted = src.layoutConverted;
    const keys = new Set(src.keys());
    this.alias = keys.has(SHARED) ? SHARED : keys.has(TIED) ? TIED : SHARED;
    if (keys.has(SHARED) && keys.has(TIED)) {
      const a = src.shape(SHARED);
      const b = src.shape(TIED);
      if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
        throw new Error(`${src.name}: tied embeddings ${SHARED} [${a}] and ${TIED} [${b}] differ in shape`);
      }
    }
  }
  keys(): string[] {
    return this.src.keys().filter((k) => k !== TIED && k !== SHARED).concat(this.src.keys().some((k) => k === SHARED || k === TIED) ? [SHARED] : []);
  }
  private map(key: string): string { return key === SHARED ? this.alias : key; }
  shape(key: string): number[] { return this.src.shape(this.map(key)); }
  read(key: string): Promise<Float32Array> { return this.src.read(this.map(key)); }
  readHalves(key: string): Promise<Uint16Array | null> { return this.src.readHalves?.(this.map(key)) ?? Promise.resolve(null); }
}

export interface T5ForwardOptions {
  inputIds: TokenIds;
  /** [B, L], 1 = attend, 0 = padding (PixArt passes the tokenizer's mask). */
  attentionMask?: TokenIds;
}

/** transformers T5EncoderModel. */
export class T5EncoderModel extends Module {
  readonly shared: Embedding;
  readonly encoder: T5Stack;
  constructor(readonly config: T5EncoderConfig) {
    super();
    this.shared = this.child('shared', new Embedding(config.vocabSize, config.dModel));
    this.encoder = this.child('encoder', new T5Stack(config));
  }

  /** Builds the model (no weights allocated) from a transformers config.json; `file` names it in errors. */
  static fromConfig(cfg: Record<string, unknown>, file?: string): T5EncoderModel {
    return checkParameterCount(new T5EncoderModel(parseT5Config(cfg, file)), 'T5EncoderModel', file);
  }

  /** Loads `<dir>/config.json` and `model.safetensors` (or a sharded `model.safetensors.index.json`). */
  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<T5EncoderModel> {
    return buildAndLoad(dir, (c, file) => T5EncoderModel.fromConfig(c, file), opts);
  }

  /** Accepts checkpoints with `shared.weight`, `encoder.embed_tokens.weight`, or both (tied). */
  override weightSource(src: WeightSource): WeightSource {
    return new TiedEmbeddingSource(src);
  }

  /** Encodes token ids (inside tf.tidy); the caller disposes lastHiddenState. */
  forward(opts: T5ForwardOptions): { lastHiddenState: tf.Tensor3D } {
    const c = this.config;
    const { values, batch, length } = readIdRows(opts.inputIds, 'T5 input_ids');
    if (length < 1) throw new Error('T5 input_ids: empty sequences');
    checkVocab(values, c.vocabSize, 'T5 input_ids');
    let maskVals: Float32Array | null = null;
    if (opts.attentionMask !== undefined) {
      const m = readIdRows(opts.attentionMask, 'T5 attention_mask');
      if (m.batch !== batch || m.length !== length) throw new Error(`T5 attention_mask shape [${m.batch},${m.length}] does not match input_ids [${batch},${length}]`);
      if (m.values.some((v) => v !== 0 && v !== 1)) throw new Error('T5 attention_mask must hold only 0 and 1');
      // transformers: (1 − mask) · finfo.min, added to the position bias.
      maskVals = Float32Array.from(m.values, (v) => (1 - v) * MASK_MIN);
    }
    const lastHiddenState = tf.tidy(() => {
      let h: tf.Tensor = this.shared.forward(tf.tensor2d(values, [batch, length], 'int32'));
      let bias: tf.Tensor = this.encoder.block.at(0).attn.SelfAttention.computeBias(length);
      if (maskVals) bias = tf.add(bias, tf.tensor4d(maskVals, [batch, 1, 1, length]));
      for (const blk of this.encoder.block.items) h = blk.forward(h, bias);
      return this.encoder.final_layer_norm.forward(h) as tf.Tensor3D;
    });
    return { lastHiddenState };
  }

  attnProcessors(): Map<string, AttnProcessor> { return attnProcessors(this); }
  setAttnProcessor(p: AttnProcessor | Record<string, AttnProcessor>): void { setAttnProcessor(this, p); }
}
