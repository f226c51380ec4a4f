/** diffusers ResnetBlock2D, Downsample2D and Upsample2D on NHWC tensors. */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../nn/module.js';
import { kernels } from '../backends/kernels.js';
import { Conv2d } from './conv.js';
import { GroupNorm } from './norm.js';
import { Linear } from './linear.js';
import { activation } from './activations.js';

export interface ResnetOptions {
  inChannels: number;
  outChannels?: number;
  tembChannels?: number | null;
  groups?: number;
  groupsOut?: number;
  eps?: number;
  nonlinearity?: string;
  outputScaleFactor?: number;
  timeEmbeddingNorm?: 'default' | 'scale_shift';
  useInShortcut?: boolean;
  convShortcutBias?: boolean;
}

export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj?: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut?: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private readonly outputScaleFactor: number;
  private readonly scaleShift: boolean;

  constructor(o: ResnetOptions) {
    super();
    const out = o.outChannels ?? o.inChannels;
    const groups = o.groups ?? 32;
    const eps = o.eps ?? 1e-6;
    this.scaleShift = o.timeEmbeddingNorm === 'scale_shift';
    this.norm1 = this.child('norm1', new GroupNorm(groups, o.inChannels, eps));
    this.conv1 = this.child('conv1', new Conv2d(o.inChannels, out, 3, 1, 1));
    if (o.tembChannels) this.time_emb_proj = this.child('time_emb_proj', new Linear(o.tembChannels, this.scaleShift ? 2 * out : out));
    this.norm2 = this.child('norm2', new GroupNorm(o.groupsOut ?? groups, out, eps));
    this.conv2 = this.child('conv2', new Conv2d(out, out, 3, 1, 1));
    if (o.useInShortcut ?? o.inChannels !== out) this.conv_shortcut = this.child('conv_shortcut', new Conv2d(o.inChannels, out, 1, 1, 0, o.convShortcutBias ?? true));
    this.act = activation(o.nonlinearity ?? 'silu');
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
  }

  /**
   * `tembAct`, when given, is act(temb) already computed: every resnet of a UNet applies the same activation
   * to the same embedding, so the UNet computes it once per forward.
   */
  forward(x: tf.Tensor4D, temb: tf.Tensor | null = null, tembAct?: tf.Tensor | null): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv1.forward(this.norm1.forwardAct(x, this.act));
      let t: tf.Tensor | null = null;
      if (this.time_emb_proj && temb) {
        t = this.time_emb_proj.forward(tembAct ?? this.act(temb));
        t = t.reshape([t.shape[0], 1, 1, t.shape[1]!]);
      }
      if (t && this.scaleShift) {
        const [scale, shift] = tf.split(t, 2, -1);
        h = this.act(tf.add(tf.mul(this.norm2.forward(h), tf.add(scale, 1)), shift)) as tf.Tensor4D;
      } else {
        h = this.norm2.forwardAct(h, this.act, t);
      }
      h = this.conv2.forward(h);
      const sc = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
      const y = tf.add(sc, h);
      return (this.outputScaleFactor === 1 ? y : tf.div(y, this.outputScaleFactor)) as tf.Tensor4D;
    });
  }
}

/** Stride-2 3×3 conv (padding 1, or diffusers' asymmetric (0,1,0,1) pad when padding is 0), or 2×2 average pool. */
export class Downsample2D extends Module {
  readonly conv?: Conv2d;
  constructor(readonly channels: number, useConv = true, outChannels?: number, readonly padding = 1) {
    super();
    if (useConv) this.conv = this.child('conv', new Conv2d(channels, outChannels ?? channels, 3, 2, padding));
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      if (!this.conv) return tf.avgPool(x, 2, 2, 'valid');
      const xp = this.padding === 0 ? tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]) : x;
      return this.conv.forward(xp);
    });
  }
}

/** Nearest-neighbour 2× upsampling (torch F.interpolate mode="nearest"). */
export function upsampleNearest2x(x: tf.Tensor4D): tf.Tensor4D {
  return kernels().upsampleNearest2x?.(x) ?? tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    // Two rank-4 tiles: WebGPU runs a tile of rank ≥ 5 on the CPU through readSync, which Node's Dawn cannot do.
    const cols = tf.tile(x.reshape([b * h, w, 1, c]), [1, 1, 2, 1]).reshape([b, h, 1, 2 * w * c]);
    return tf.tile(cols, [1, 1, 2, 1]).reshape([b, 2 * h, 2 * w, c]);
  });
}

export class Upsample2D extends Module {
  readonly conv?: Conv2d;
  constructor(readonly channels: number, useConv = true, outChannels?: number) {
    super();
    if (useConv) this.conv = this.child('conv', new Conv2d(channels, outChannels ?? channels, 3, 1, 1));
  }
  /** `size` forces the output size (diffusers passes it when the skip connection is odd-sized). */
  forward(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      const up = size ? tf.image.resizeNearestNeighbor(x, size) : upsampleNearest2x(x);
      return this.conv ? this.conv.forward(up) : up;
    });
  }
}
