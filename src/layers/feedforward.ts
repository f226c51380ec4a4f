/** diffusers `FeedForward`: net.0 (GELU / GEGLU projection), net.1 dropout (no weights), net.2 Linear. */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Linear } from './linear.js';
import { gelu, geluTanh } from './activations.js';
import { kernels } from '../backends/kernels.js';
import { transpose2d } from '../nn/transpose2d.js';
import { contiguousRange } from './contiguous-range.js';
import { streamsWeight } from './gemm.js';

/**
 * [..., 2n] → its two halves [..., n]. Where the backend copies contiguous ranges itself (wasm), one transpose
 * then two such copies instead of tf.split, whose two Slices each copy the whole input out of the wasm heap
 * through JS first (backends/wasm/contiguous-range.ts).
 */
function halves(h: tf.Tensor): [tf.Tensor, tf.Tensor] {
  if (!kernels().contiguousRange) return tf.split(h, 2, -1) as [tf.Tensor, tf.Tensor];
  return tf.tidy(() => {
    const n = h.shape[h.rank - 1]! / 2;
    const rows = h.size / (2 * n);
    const shape = [...h.shape.slice(0, -1), n];
    const split = h.reshape([rows, 2, n]).transpose([1, 0, 2]);
    return [contiguousRange(split, 0, shape), contiguousRange(split, rows * n, shape)];
  });
}

/** GEGLU's gating: a · GELU(gate). */
const gateWithGelu = (a: tf.Tensor, gate: tf.Tensor): tf.Tensor => tf.mul(a, gelu(gate));

/** `GELU` (with approximate none|tanh) or `GEGLU`: a projection followed by the activation. */
export class GeluProjection extends Module {
  readonly proj: Linear;
  constructor(dimIn: number, dimOut: number, readonly kind: 'gelu' | 'gelu-approximate' | 'geglu', bias = true) {
    super();
    this.proj = this.child('proj', new Linear(dimIn, kind === 'geglu' ? dimOut * 2 : dimOut, bias));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = this.proj.forward(x);
      if (this.kind === 'geglu') return kernels().geglu?.(h) ?? gateWithGelu(...halves(h));
      return this.kind === 'gelu' ? gelu(h) : geluTanh(h);
    });
  }
}

/** Placeholder for weightless entries of a torch Sequential (dropout), so indices line up with diffusers. */
export class Identity extends Module {}

export class FeedForward extends Module {
  readonly net: ModuleList<Module>;
  constructor(dim: number, opts: { dimOut?: number; mult?: number; innerDim?: number; activationFn?: string; bias?: boolean } = {}) {
    super();
    const inner = opts.innerDim ?? dim * (opts.mult ?? 4);
    const act = opts.activationFn ?? 'geglu';
    const kinds: Record<string, 'gelu' | 'gelu-approximate' | 'geglu'> = { geglu: 'geglu', gelu: 'gelu', 'gelu-approximate': 'gelu-approximate' };
    if (!kinds[act]) throw new Error(`FeedForward: unsupported activation_fn "${act}" (supported: geglu, gelu, gelu-approximate)`);
    this.net = this.child('net', new ModuleList<Module>([
      new GeluProjection(dim, inner, kinds[act], opts.bias ?? true),
      new Identity(),
      new Linear(inner, opts.dimOut ?? dim, opts.bias ?? true),
    ]));
  }
  forward(x: tf.Tensor): tf.Tensor {
    const act = this.net.at(0) as GeluProjection;
    const out = this.net.at(2) as Linear;
    const streamed = (l: Linear) => !l.weight.isPacked && streamsWeight(l.weight.size);
    if (act.kind === 'geglu' && streamed(act.proj) && streamed(out)) return gegluTransposed(x, act.proj, out);
    return tf.tidy(() => out.forward(act.forward(x)));
  }
}

/**
 * GEGLU with both weights streamed (wasm): the projection, the gating and the output Linear all on transposed
 * activations, where GEGLU's halves are contiguous row blocks. One transpose in and one out, instead of four
 * (two per streamed Linear) plus one to split the halves.
 */
function gegluTransposed(x: tf.Tensor, proj: Linear, out: Linear): tf.Tensor {
  return tf.tidy(() => {
    const rows = x.size / proj.inFeatures;
    const n = proj.outFeatures / 2;
    const hT = proj.forwardTransposed(transpose2d(x.reshape([rows, proj.inFeatures]) as tf.Tensor2D));
    const gated = gateWithGelu(contiguousRange(hT, 0, [n, rows]), contiguousRange(hT, n * rows, [n, rows]));
    const y = transpose2d(out.forwardTransposed(gated as tf.Tensor2D));
    return y.reshape([...x.shape.slice(0, -1), out.outFeatures]);
  });
}
