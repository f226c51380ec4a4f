/**
 * DeepCache (arXiv 2312.00858; reference: horseee/DeepCache, DeepCacheSDHelper) for the UNets, branch 0:
 * on a cached step only conv_in, the time embedding, the last resnet (+ attention) of the last up block,
 * and the output head run; the last up block's input comes from the previous full step, its skip
 * connection from this step's conv_in. With TGATE the schedule restarts at TGATE's steps gate−1 and gate,
 * where the batch size changes (T-GATE's SD_DeepCache counts them after the scheduler's warm-up calls).
 *
 * Steps are counted as DeepCacheSDHelper counts them: the index of the step's timestep in the scheduler's
 * list (its first occurrence: PLMS's repeated timestep counts twice as the same index), relative to the
 * first step's (or the last restart's).
 *
 * With a ControlNet the UNet adds its residuals to every skip; on a cached step the only skip still read is
 * conv_in's, so the cached path adds residual 0 to it (what the helper computes on diffusers' ControlNet
 * pipeline, where the ControlNet runs every step). The other residuals feed only blocks a cached step skips.
 */
import * as tf from '@tensorflow/tfjs-core';
import { residualNhwc, type UNet2DConditionModel, type UNetForwardOptions } from '../models/unet-2d-condition.js';
import type { ResnetBlock2D } from '../layers/resnet.js';
import { maskToBias } from '../attention/sdpa.js';
import type { DenoiserCall } from './denoise.js';

export interface DeepCacheOptions {
  /** Run the full UNet every `cacheInterval` steps. */
  cacheInterval: number;
  /** Which skip branch stays fresh; only 0 (the shallowest, the common choice) is supported. */
  cacheBranchId?: number;
}

export class DeepCache {
  private start: number | null = null;
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

  /**
   * Decides whether loop step `step` runs the full UNet; `at` says where it sits (both counts default to
   * `step`: a scheduler without warm-up calls or repeated timesteps).
   */
  beforeStep(step: number, at: Partial<DenoiserCall> = {}): void {
    const index = at.index ?? step;
    const cur = at.tgateStep ?? step;
    const g = this.gateStep;
    if (this.start === null || (g !== undefined && (cur === g - 1 || cur === g))) this.start = index;
    this.full = (index - this.start) % this.opts.cacheInterval === 0;
    if (this.full) this.fullSteps.push(step);
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
      let skip = u.conv_in.forward(u.config.centerInputSample ? tf.sub(tf.mul(x, 2), 1) as tf.Tensor4D : x);
      const residual = o.downBlockAdditionalResiduals?.[0];
      if (residual) skip = tf.add(skip, residualNhwc(residual, skip, 'downBlockAdditionalResiduals[0]'));
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
