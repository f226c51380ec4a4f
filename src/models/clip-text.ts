/**
 * CLIP text encoders as transformers 4.45 defines them: CLIPTextModel (SD-1.5/2.1, SDXL's first encoder)
 * and CLIPTextModelWithProjection (SDXL's second encoder). Parameter keys are transformers' state-dict keys
 * (`text_model.encoder.layers.N.self_attn.q_proj.weight`, …), so a `model.safetensors` loads 1:1.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Linear } from '../layers/linear.js';
import { LayerNorm } from '../layers/norm.js';
import { ACTIVATION_NAMES, activation } from '../layers/activations.js';
import { attnProcessors, setAttnProcessor } from '../attention/registry.js';
import { AttentionModule, type AttnProcessor, type AttnProjections } from '../attention/processor.js';
import { Embedding } from '../layers/embeddings.js';
import { MASK_MIN, checkVocab, readIdRows, type TokenIds } from './text-inputs.js';
import { buildAndLoad, type LoadWeightsOptions } from '../io/component-source.js';
import { ConfigReader, LIMITS, checkParameterCount } from '../io/config.js';

export interface CLIPTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: string;
  layerNormEps: number;
  /** 2 selects transformers' legacy pooling (argmax of the ids); anything else pools at the first eos. */
  eosTokenId: number;
  projectionDim: number;
}

/**
 * Parses and validates a transformers CLIPTextConfig (or a full CLIPConfig, whose `text_config` is used) with
 * transformers 4.45's defaults; errors name `file`, the class and the key.
 */
export function parseCLIPTextConfig(raw: Record<string, unknown>, file?: string, className = 'CLIPTextModel'): CLIPTextConfig {
  const outer = ConfigReader.of(raw, className, file);
  const nested = raw.model_type === 'clip' && raw.text_config !== undefined;
  // A full CLIPConfig: the text settings live in text_config, projection_dim at the top level.
  const r = nested ? ConfigReader.of(raw.text_config, `${className} text_config`, file) : outer;
  const int = (key: string, dflt: number, min: number, max?: number): number => r.int(key, { default: dflt, min, max });
  const hiddenSize = int('hidden_size', 512, 1, LIMITS.width);
  const heads = int('num_attention_heads', 8, 1, LIMITS.heads);
  if (hiddenSize % heads) throw r.fail('num_attention_heads', `does not divide hidden_size=${hiddenSize}`);
  r.oneOf('position_embedding_type', ['absolute'], { default: 'absolute' });
  const projectionDefault = r.int('projection_dim', { default: 512, min: 1, max: LIMITS.width });
  const vocabSize = int('vocab_size', 49408, 1, LIMITS.vocab);
  return {
    vocabSize,
    hiddenSize,
    intermediateSize: int('intermediate_size', 2048, 1, LIMITS.innerWidth),
    numHiddenLayers: int('num_hidden_layers', 12, 1, LIMITS.layers),
    numAttentionHeads: heads,
    maxPositionEmbeddings: int('max_position_embeddings', 77, 1, LIMITS.positions),
    hiddenAct: r.oneOf('hidden_act', ACTIVATION_NAMES, { default: 'quick_gelu' }),
    layerNormEps: r.number('layer_norm_eps', { default: 1e-5, above: 0 }),
    // The pooled row is the first eos: an id outside the vocabulary is never found, and row 0 would be pooled.
    eosTokenId: int('eos_token_id', 49407, 0, vocabSize - 1),
    projectionDim: nested ? outer.int('projection_dim', { default: projectionDefault, min: 1, max: LIMITS.width }) : projectionDefault,
  };
}

/** transformers CLIPAttention: self-attention only; the causal and padding masks come in as the bias. */
class CLIPAttention extends AttentionModule {
  readonly scale: number;
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  constructor(dim: number, readonly heads: number) {
    super();
    this.scale = (dim / heads) ** -0.5;
    this.q_proj = this.child('q_proj', new Linear(dim, dim));
    this.k_proj = this.child('k_proj', new Linear(dim, dim));
    this.v_proj = this.child('v_proj', new Linear(dim, dim));
    this.out_proj = this.child('out_proj', new Linear(dim, dim));
  }
  protected projections(): AttnProjections {
    return { q: this.q_proj, k: this.k_proj, v: this.v_proj, out: this.out_proj };
  }
}

class CLIPMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  constructor(dim: number, inner: number, act: string) {
    super();
    this.fc1 = this.child('fc1', new Linear(dim, inner));
    this.fc2 = this.child('fc2', new Linear(inner, dim));
    this.act = activation(act);
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(this.act(this.fc1.forward(x))));
  }
}

class CLIPEncoderLayer extends Module {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: LayerNorm;
  constructor(c: CLIPTextConfig) {
    super();
    this.self_attn = this.child('self_attn', new CLIPAttention(c.hiddenSize, c.numAttentionHeads));
    this.layer_norm1 = this.child('layer_norm1', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.mlp = this.child('mlp', new CLIPMLP(c.hiddenSize, c.intermediateSize, c.hiddenAct));
    this.layer_norm2 = this.child('layer_norm2', new LayerNorm(c.hiddenSize, c.layerNormEps));
  }
  forward(x: tf.Tensor, bias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = tf.add(x, this.self_attn.forward(this.layer_norm1.forward(x), null, bias));
      return tf.add(h, this.mlp.forward(this.layer_norm2.forward(h)));
    });
  }
}

class CLIPEncoder extends Module {
  readonly layers: ModuleList<CLIPEncoderLayer>;
  constructor(c: CLIPTextConfig) {
    super();
    this.layers = this.child('layers', new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new CLIPEncoderLayer(c))));
  }
}

class CLIPTextEmbeddings extends Module {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;
  constructor(c: CLIPTextConfig) {
    super();
    this.token_embedding = this.child('token_embedding', new Embedding(c.vocabSize, c.hiddenSize));
    this.position_embedding = this.child('position_embedding', new Embedding(c.maxPositionEmbeddings, c.hiddenSize));
  }
  forward(ids: tf.Tensor2D): tf.Tensor {
    return tf.tidy(() => {
      const len = ids.shape[1];
      const pos = this.position_embedding.forward(tf.range(0, len, 1, 'int32'));
      return tf.add(this.token_embedding.forward(ids), pos);
    });
  }
}

class CLIPTextTransformer extends Module {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly final_layer_norm: LayerNorm;
  constructor(c: CLIPTextConfig) {
    super();
    this.embeddings = this.child('embeddings', new CLIPTextEmbeddings(c));
    this.encoder = this.child('encoder', new CLIPEncoder(c));
    this.final_layer_norm = this.child('final_layer_norm', new LayerNorm(c.hiddenSize, c.layerNormEps));
  }
}

export interface CLIPTextForwardOptions {
  inputIds: TokenIds;
  /** [B, L], 1 = attend, 0 = padding. SD pipelines pass none (CLIP was trained causal-only). */
  attentionMask?: TokenIds;
  /** Return every hidden state (default true); false keeps only the last one. */
  outputHiddenStates?: boolean;
}

export interface CLIPTextOutput {
  /** [B, L, D] after final_layer_norm. */
  lastHiddenState: tf.Tensor3D;
  /** The embeddings, then each layer's output (before final_layer_norm); SDXL uses hiddenStates[length − 2]. */
  hiddenStates: tf.Tensor3D[];
  /** CLIPTextModel: [B, D], lastHiddenState at the pooled position. */
  pooledOutput?: tf.Tensor2D;
  /** CLIPTextModelWithProjection: [B, projection_dim], text_projection(pooled). */
  textEmbeds?: tf.Tensor2D;
}

/** Common body of both CLIP text models; subclasses add the head. */
abstract class CLIPTextBase extends Module {
  readonly text_model: CLIPTextTransformer;
  constructor(readonly config: CLIPTextConfig) {
    super();
    this.text_model = this.child('text_model', new CLIPTextTransformer(config));
  }

  /** Where each row is pooled: transformers' legacy argmax of the ids when eos_token_id is 2, else the first eos. */
  poolPositions(ids: Int32Array, batch: number, length: number): number[] {
    const out: number[] = [];
    for (let b = 0; b < batch; b++) {
      const row = ids.subarray(b * length, (b + 1) * length);
      let at = 0;
      if (this.config.eosTokenId === 2) {
        for (let i = 1; i < length; i++) if (row[i] > row[at]) at = i; // first maximum, as torch.argmax
      } else {
        const i = row.indexOf(this.config.eosTokenId);
        at = i < 0 ? 0 : i; // argmax of an all-false row is 0 in torch
      }
      out.push(at);
    }
    return out;
  }

  /** Runs the transformer; returns hidden states and the pooled rows (pre-head). */
  protected run(opts: CLIPTextForwardOptions): { last: tf.Tensor3D; hidden: tf.Tensor3D[]; pooled: tf.Tensor2D } {
    const c = this.config;
    const { values, batch, length } = readIdRows(opts.inputIds, 'CLIP input_ids');
    if (length < 1) throw new Error('CLIP input_ids: empty sequences');
    if (length > c.maxPositionEmbeddings) {
      throw new Error(`CLIP input_ids: sequence length ${length} exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
    }
    checkVocab(values, c.vocabSize, 'CLIP input_ids');
    let mask: Int32Array | null = null;
    if (opts.attentionMask !== undefined) {
      const m = readIdRows(opts.attentionMask, 'CLIP attention_mask');
      if (m.batch !== batch || m.length !== length) throw new Error(`CLIP attention_mask shape [${m.batch},${m.length}] does not match input_ids [${batch},${length}]`);
      if (m.values.some((v) => v !== 0 && v !== 1)) throw new Error('CLIP attention_mask must hold only 0 and 1');
      mask = m.values;
    }
    // Causal and padding masks folded into one additive bias; a position hidden by both gets MASK_MIN once
    // (torch would overflow to -inf there, which softmax treats the same).
    const nb = mask ? batch : 1;
    const biasVals = new Float32Array(nb * length * length);
    for (let b = 0; b < nb; b++) {
      for (let i = 0; i < length; i++) {
        for (let j = 0; j < length; j++) {
          if (j > i || (mask && mask[b * length + j] === 0)) biasVals[(b * length + i) * length + j] = MASK_MIN;
        }
      }
    }
    const poolAt = this.poolPositions(values, batch, length);
    const keepAll = opts.outputHiddenStates !== false;
    return tf.tidy(() => {
      const ids = tf.tensor2d(values, [batch, length], 'int32');
      const bias = tf.tensor4d(biasVals, [nb, 1, length, length]);
      let h = this.text_model.embeddings.forward(ids) as tf.Tensor3D;
      const hidden: tf.Tensor3D[] = [h];
      for (const layer of this.text_model.encoder.layers.items) {
        h = layer.forward(h, bias) as tf.Tensor3D;
        hidden.push(h);
      }
      const last = this.text_model.final_layer_norm.forward(h);
      const flatIdx = tf.tensor1d(poolAt.map((p, b) => b * length + p), 'int32');
      const pooled = tf.gather(last.reshape([batch * length, c.hiddenSize]), flatIdx) as tf.Tensor2D;
      return { last, hidden: keepAll ? hidden : [], pooled };
    });
  }

  attnProcessors(): Map<string, AttnProcessor> { return attnProcessors(this); }
  setAttnProcessor(p: AttnProcessor | Record<string, AttnProcessor>): void { setAttnProcessor(this, p); }
}

/** transformers CLIPTextModel: returns lastHiddenState, hiddenStates and pooledOutput. */
export class CLIPTextModel extends CLIPTextBase {
  /** Builds the model (no weights allocated) from a transformers config.json; `file` names it in errors. */
  static fromConfig(cfg: Record<string, unknown>, file?: string): CLIPTextModel {
    return checkParameterCount(new CLIPTextModel(parseCLIPTextConfig(cfg, file, 'CLIPTextModel')), 'CLIPTextModel', file);
  }

  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<CLIPTextModel> {
    return buildAndLoad(dir, (c, file) => CLIPTextModel.fromConfig(c, file), opts);
  }

  /** Encodes token ids (no grad, inside tf.tidy); the caller disposes the returned tensors. */
  forward(opts: CLIPTextForwardOptions): CLIPTextOutput {
    const { last, hidden, pooled } = this.run(opts);
    return { lastHiddenState: last, hiddenStates: hidden, pooledOutput: pooled };
  }
}

/** transformers CLIPTextModelWithProjection: adds `text_projection` (no bias); returns textEmbeds. */
export class CLIPTextModelWithProjection extends CLIPTextBase {
  readonly text_projection: Linear;
  constructor(config: CLIPTextConfig) {
    super(config);
    this.text_projection = this.child('text_projection', new Linear(config.hiddenSize, config.projectionDim, false));
  }

  /** Builds the model (no weights allocated) from a transformers config.json; `file` names it in errors. */
  static fromConfig(cfg: Record<string, unknown>, file?: string): CLIPTextModelWithProjection {
    return checkParameterCount(new CLIPTextModelWithProjection(parseCLIPTextConfig(cfg, file, 'CLIPTextModelWithProjection')), 'CLIPTextModelWithProjection', file);
  }

  static async fromPretrained(dir: string, opts: LoadWeightsOptions = {}): Promise<CLIPTextModelWithProjection> {
    return buildAndLoad(dir, (c, file) => CLIPTextModelWithProjection.fromConfig(c, file), opts);
  }

  forward(opts: CLIPTextForwardOptions): CLIPTextOutput {
    const { last, hidden, pooled } = this.run(opts);
    const textEmbeds = tf.tidy(() => this.text_projection.forward(pooled)) as tf.Tensor2D;
    pooled.dispose();
    return { lastHiddenState: last, hiddenStates: hidden, textEmbeds };
  }
}

