/**
 * Writing LoRA deltas into weights and taking them out again bit for bit.
 *
 * W' − Δ does not give W back in float32, so the original of every weight a fused adapter touches is kept,
 * in our layout, in JS memory (not in the backend, whose memory is the scarce one: wasm's 4 GiB heap, a GPU);
 * each fused weight is recomputed from it as W + Σ Δ over the adapters fused on it, in load order, and the
 * last unfuse writes it back unchanged. Offloaded weights (nn/offload.ts) are read and written in JS memory
 * like any load, so they stream fused. float16 weights (packed halves, nn/packed-weight.ts) keep their halves as
 * the original (half the bytes); the sum is made in float32 from them and rounded to halves once.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Parameter } from '../nn/module.js';
import { transposeValues } from '../nn/host-weights.js';
import { weightInOurLayout } from '../nn/streamed-weights.js';
import { fromHalves } from '../nn/float16.js';
import type { LoraTarget } from './targets.js';

/** What a weight held before fusing: float32 values in our layout, or a float16 weight's halves. */
type Original = Float32Array | Uint16Array;

/** An original's values as float32 (halves widened exactly). */
function float32Of(v: Original): Float32Array {
  if (v instanceof Float32Array) return v;
  const out = new Float32Array(v.length);
  fromHalves(v, out);
  return out;
}

/**
 * A copy of the parameter's values in our layout ([in, out] / HWIO), wherever and however it is held (the halves
 * of a float16 weight). Read asynchronously: WebGPU in Node cannot read synchronously at all, and in a browser it
 * would stall.
 */
async function ourValues(p: Parameter, path: string): Promise<Original> {
  if (p.packed) {
    if (p.dtype !== 'float16') throw new Error(`cannot fuse a LoRA into ${path}: it is held as row pieces, which only tables are`);
    return p.packed.readHalves();
  }
  if (p.host) {
    const v = p.host.values;
    if (!v) throw new Error(`cannot fuse a LoRA into ${path}: its weights are not loaded`);
    if (!p.host.streamed) return v;
    // The streamed layout is the transpose of ours viewed 2-D (nn/streamed-weights.ts).
    const cols = p.shape[p.shape.length - 1];
    return transposeValues(v, cols, p.size / cols);
  }
  if (!p.value) throw new Error(`cannot fuse a LoRA into ${path}: its weights are not loaded`);
  const t = weightInOurLayout(p);
  try {
    // A copy: the cpu backend hands out the stored array itself.
    return (await t.data() as Float32Array).slice();
  } finally {
    t.dispose();
  }
}

/** scale · down · up in the weight's layout (a Linear's [in, out], a convolution's HWIO). */
export function loraDelta(t: LoraTarget): tf.Tensor {
  return tf.tidy(() => {
    const { down, up, scale } = t.branch;
    const d2 = down.rank === 2 ? down as tf.Tensor2D : down.reshape([-1, t.rank]) as tf.Tensor2D;
    return tf.matMul(d2, tf.mul(up, scale)).reshape(t.layer.weight.shape);
  });
}

/** The originals of the weights fused now. */
export class FusedWeights {
  private readonly originals = new Map<Parameter, Original>();

  /** Bytes of originals held in JS memory. */
  get bytes(): number {
    let n = 0;
    for (const v of this.originals.values()) n += v.byteLength;
    return n;
  }

  /**
   * Sets the weight of `targets[0].layer` (all targets share it) to its original plus each target's delta;
   * with no targets, writes the original back and forgets it.
   */
  async write(p: Parameter, path: string, targets: LoraTarget[]): Promise<void> {
    let orig = this.originals.get(p);
    if (!targets.length) {
      if (!orig) return;
      this.originals.delete(p);
      if (p.host) p.host.values = orig as Float32Array;
      else if (orig instanceof Uint16Array) p.assign(orig);
      else p.set(tf.tensor(orig, p.shape, 'float32'));
      return;
    }
    if (!orig) this.originals.set(p, orig = await ourValues(p, path));
    const base = float32Of(orig);
    const fused = tf.tidy(() => targets.reduce<tf.Tensor>((w, t) => tf.add(w, loraDelta(t)), tf.tensor(base, p.shape, 'float32')));
    if (!p.host && !p.packed) { p.set(fused); return; }
    // An offloaded weight lives in JS memory, a float16 one is packed there: read the sum back (asynchronously, see ourValues).
    try {
      const values = new Float32Array(await fused.data() as Float32Array);
      if (p.host) p.host.values = values;
      else p.assign(values);
    } finally {
      fused.dispose();
    }
  }

  /** Forgets the originals without writing them back (the model is being disposed). */
  clear(): void {
    this.originals.clear();
  }
}
