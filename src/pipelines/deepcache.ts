/**
 * DeepCache (arXiv 2312.00858; reference: horseee/DeepCache, DeepCacheSDHelper) for the UNets, branch 0:
 * on a cached step only conv_in, the time embedding, the last resnet (+ attention) of the last up block,
 * and the output head run; the last up block's input comes from the previous full step, its skip
 * connection from this step's conv_in. With TGATE the schedule restarts at gate−1 and gate, where the
 * batch size changes.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { UNet2DConditionModel, UNetForwardOptions } from '../models/unet-2d-condition.js';
import type { ResnetBlock2D } from '../layers/resnet.js';
import { maskToBias } from '../attention/sdpa.js';

export interface DeepCacheOptions {
  /** Run the full UNet every `cacheInterval` steps. */
  cacheInterval: number;
  /** Which skip branch stays fresh; only 0 (the shallowest, the common choice) is supported. */
  cacheBranchId?: number;
}

export class DeepCache {
  private start = 0;
  private full = true;
  private cached: tf.Tensor4D | null = null;
  /** Steps that ran the whole UNet (for tests and reports). */
  readonly fullSteps: number[] = [];

  constructor(private readonly unet: UNet2DConditionModel, readonly opts: DeepCacheOptions, private readonly gateStep?: number) {
    if (!Number.isInteger(opts.cacheInterval) || opts.cacheInterval < 1) throw new Error(`deepcache.cacheInterval must be an integer ≥ 1, got ${opts.cacheInterval}`);
    if ((opts.cacheBranchId ?? 0) !== 0) throw new Error(`deepcache.cacheBranchId ${opts.cacheBranchId} is not supported (only 0)`);
    const last = unet.up_blocks.at(unet.up_blocks.length - 1);
    if (last.upsamplers) throw new Error('DeepCache needs a UNet whose last up block does not upsample');
  }

  /** Decides whether step `i` runs the full UNet. */
  beforeStep(i: number): void {
    if (this.gateStep !== undefined && (i === this.gateStep - 1 || i === this.gateStep)) this.start = i;
    this.full = (i - this.start) % this.opts.cacheInterval === 0;
    if (this.full) this.fullSteps.push(i);
  }

  forward(o: UNetForwardOptions): tf.Tensor4D {
    const last = this.unet.up_blocks.at(this.unet.up_blocks.length - 1);
    const resnet = last.resnets.at(last.resnets.length - 1);
    const skipChannels = this.unet.config.blockOutChannels[0];
    if (this.full) {
      // Capture the hidden state entering the last resnet (its input minus the conv_in skip channels).
      const original = resnet.forward;
      resnet.forward = (x: tf.Tensor4D, temb: tf.Tensor | null = null) => {
        const c = x.shape[3] - skipChannels;
        this.cached?.dispose();
        this.cached = tf.keep(x.slice([0, 0, 0, 0], [-1, -1, -1, c]));
        return original.call(resnet, x, temb);
      };
      try {
        return this.unet.forward(o);
      } finally {
        delete (resnet as Partial<ResnetBlock2D>).forward;
      }
    }
    const u = this.unet;
    u.validateInputs(o);
    return tf.tidy(() => {
      const b = o.sample.shape[0];
      if (!this.cached) throw new Error('DeepCache: a cached step came before any full step');
      if (this.cached.shape[0] !== b) throw new Error(`DeepCache: cached batch ${this.cached!.shape[0]} but this step runs batch ${b}`);
      const x = o.sample.transpose([0, 2, 3, 1]) as tf.Tensor4D;
      const temb = u.embed(o, b);
      const skip = u.conv_in.forward(u.config.centerInputSample ? tf.sub(tf.mul(x, 2), 1) as tf.Tensor4D : x);
      let h = resnet.forward(tf.concat([this.cached!, skip], 3) as tf.Tensor4D, temb);
      if (last.attentions) {
        const encBias = o.encoderAttentionMask ? maskToBias(o.encoderAttentionMask) : null;
        h = last.attentions.at(last.attentions.length - 1).forward(h, o.encoderHiddenStates, encBias, o.attnContext ?? {});
      }
      return u.head(h).transpose([0, 3, 1, 2]) as tf.Tensor4D;
    });
  }

  dispose(): void {
    this.cached?.dispose();
    this.cached = null;
  }
}
