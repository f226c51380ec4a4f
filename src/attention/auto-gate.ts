/**
 * TGATE with an automatic gate (`tgate: { gateStep: 'auto', autoThreshold? }`): the gate is chosen during the
 * generation itself from how fast cross-attention is still changing — no second run.
 *
 * Measurement: every cross-attention module's output O_i (which the TGATE processor computes anyway before the
 * gate) is compared with its output at the previous step; the change of step i is
 *   r_i = mean over cross-attention modules of ‖O_i − O_{i−1}‖₂ / ‖O_{i−1}‖₂
 * (= `out_rel` of the attn2 mean in `tgate analyze`). Cost per module and step: one subtraction and two
 * sums of squares on a tensor the size of the attention output, plus one scalar read per step — noise next to
 * the q/k/v projections and attention it sits beside, and nothing at all once the gate is decided.
 *
 * Rule: T-GATE caches the cross-attention at step gate − 1 (the mean of the guidance halves), so that step
 * must know it is the cache step before it runs. Before step i only r_1 … r_{i−1} are known; step i becomes the
 * cache step (gate = i + 1) when the last `patience` measured changes are all below the threshold T:
 *   r_{i−patience}, …, r_{i−1} < T  ⇒  gate = i + 1.
 * With the default patience 2, if j is the first step with r_j < T and r_{j+1} < T, the gate is j + 3 (`tgate
 * analyze`, deciding with hindsight, suggests j + 2). Two consecutive steps because r_i is noisy (on the
 * tiny-shapes model it dips and spikes by ±50% around a plateau); one dip must not close the gate. The earliest
 * possible gate is patience + 2. If the change never settles below T, no gate happens (a plain run with
 * self-attention caching).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import type { AttentionModule } from './processor.js';
import { wrapProcessors } from './registry.js';
import type { GateController } from './tgate.js';

/**
 * Default threshold on r_i, chosen on the bundled tiny-shapes model (25 DDIM steps, guidance 7.5, 6 prompts of
 * the evaluation set): r_i falls from 0.06–0.10 at step 1 to a plateau of 0.02–0.04 from step 3–8 on (with
 * spikes to 0.06 and 0.3 at the last step), so 0.04 detects the plateau and gates at step 6–10. It is
 * model-specific: run `tgate analyze` on a model to see its curve. r_i also shrinks with the timestep
 * spacing, so runs with more steps reach a given threshold earlier.
 */
export const AUTO_GATE_THRESHOLD = 0.04;

/** Consecutive measured changes below the threshold that close the gate by default. */
export const AUTO_GATE_PATIENCE = 2;

export interface AutoGateOptions {
  threshold?: number;
  /** Consecutive measured changes that must be below the threshold. Default AUTO_GATE_PATIENCE (2). */
  patience?: number;
}

interface Prev {
  out: tf.Tensor;
  normSq: tf.Scalar;
}

/**
 * Wraps the cross-attention processors of a denoiser to measure r_i and answers the denoising loop's
 * question "is this the cache step?". Install with {@link install}; the TGATE session restores the previous
 * processors at the end of the generation and calls {@link dispose}.
 */
export class AutoGate implements GateController {
  readonly threshold: number;
  readonly patience: number;
  /** r_i per step i (undefined where not measured: step 0 and from the cache step on). */
  readonly changes: (number | undefined)[] = [];
  /** The gate once decided. */
  gateStep: number | null = null;
  private readonly prev = new Map<AttentionModule, Prev>();
  private stepSum: tf.Scalar | null = null;
  private stepCount = 0;

  constructor(opts: AutoGateOptions = {}) {
    this.threshold = opts.threshold ?? AUTO_GATE_THRESHOLD;
    this.patience = opts.patience ?? AUTO_GATE_PATIENCE;
    if (!(this.threshold > 0)) throw new Error(`auto gate: threshold must be positive, got ${this.threshold}`);
    if (!Number.isInteger(this.patience) || this.patience < 1) throw new Error(`auto gate: patience must be an integer ≥ 1, got ${this.patience}`);
  }

  /**
   * Wraps every attention module's current processor under `root` (only cross-attention calls are measured;
   * everything else, `reuses` included, is the wrapped processor's). Returns the function that unwraps them.
   */
  install(root: Module): () => void {
    return wrapProcessors(root, (inner) => ({
      call: (attn, hidden, enc, bias, ctx) => {
        const y = inner.call(attn, hidden, enc, bias, ctx);
        if (enc !== null && this.gateStep === null) this.measure(attn, y);
        return y;
      },
    }));
  }

  private measure(attn: AttentionModule, y: tf.Tensor): void {
    const p = this.prev.get(attn);
    const normSq = tf.keep(tf.sum(tf.square(y)) as tf.Scalar);
    if (p && p.out.shape.join() === y.shape.join()) {
      const next = tf.tidy(() => {
        const r = tf.div(tf.sqrt(tf.sum(tf.square(tf.sub(y, p.out)))), tf.sqrt(p.normSq));
        return (this.stepSum ? tf.add(this.stepSum, r) : r) as tf.Scalar;
      });
      this.stepSum?.dispose();
      this.stepSum = tf.keep(next);
      this.stepCount++;
    }
    if (p) {
      p.out.dispose();
      p.normSq.dispose();
    }
    // The clone shares y's data: keeping it costs no copy, only delays freeing by one step.
    this.prev.set(attn, { out: tf.keep(y.clone()), normSq });
  }

  isCacheStep(step: number): boolean {
    if (this.gateStep !== null) return false;
    if (step < this.patience + 1) return false;
    for (let j = step - this.patience; j < step; j++) {
      const r = this.changes[j];
      if (r === undefined || !(r < this.threshold)) return false;
    }
    this.gateStep = step + 1;
    this.release();
    return true;
  }

  async afterStep(step: number): Promise<void> {
    if (!this.stepSum) return;
    const sum = this.stepSum;
    const n = this.stepCount;
    this.stepSum = null;
    this.stepCount = 0;
    const v = (await sum.data())[0];
    sum.dispose();
    this.changes[step] = v / n;
  }

  private release(): void {
    for (const p of this.prev.values()) {
      p.out.dispose();
      p.normSq.dispose();
    }
    this.prev.clear();
    this.stepSum?.dispose();
    this.stepSum = null;
    this.stepCount = 0;
  }

  /** Frees every held tensor (end of the generation). */
  dispose(): void {
    this.release();
  }
}
