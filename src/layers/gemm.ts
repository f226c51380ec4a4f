/**
 * How Linear and Conv2d multiply activations by their weights.
 *
 * tfjs-backend-wasm runs a 2-D matMul as an XNNPACK fully-connected operator and conv2d as an XNNPACK
 * convolution; both pack their second ("weights") operand once and keep the packed copy until that tensor
 * is disposed. With the weight in that place, resident weights cost twice their size (SD-1.5's 3.2 GiB UNet
 * then overflows the ~3.9 GiB wasm heap) and an offloaded weight is repacked every forward.
 *
 * The 'streamed' strategy puts the weight on the operand XNNPACK streams instead:
 *   yᵀ[out, rows] = W[out, in] · xᵀ[in, rows]
 * The packed operand is then the activation (a fresh tensor, packed at the cost of reading it once and freed
 * with it), and the weight is read in place. It needs the weight as [out, in], so a streamed parameter's
 * tensor is kept in that layout (layers/streamed-weights.ts); convolutions become one GEMM over an im2col
 * built by XNNPACK itself (a convolution with a one-hot filter, see {@link conv2dStreamed}).
 *
 * 'packed' is TF.js's own path (the weight as matMul's B / conv2d's filter). 'auto' (the default) streams on
 * wasm only (the other backends do not copy their weights), and only weights of {@link AUTO_MIN_STREAMED}
 * elements or more: below that the packed copy costs little memory, while the streamed path's transposes and
 * im2col cost more than the GEMM saves (a UNet with 32–128 channels ran 1.8× slower streamed).
 */
import * as tf from '@tensorflow/tfjs-core';
// x.reshape(), x.transpose()… on tf.Tensor.
import '../nn/chained-ops.js';

export type GemmStrategy = 'auto' | 'packed' | 'streamed';

const STRATEGIES: GemmStrategy[] = ['auto', 'packed', 'streamed'];

function initialStrategy(): GemmStrategy {
  // TGATE_GEMM lets a benchmark compare both paths without code changes.
  const env = typeof process !== 'undefined' ? process.env?.TGATE_GEMM : undefined;
  if (env === undefined || env === '') return 'auto';
  if (!STRATEGIES.includes(env as GemmStrategy)) throw new Error(`TGATE_GEMM must be one of ${STRATEGIES.join(', ')}, got "${env}"`);
  return env as GemmStrategy;
}

let strategy: GemmStrategy = initialStrategy();

/** Selects the strategy for every Linear and Conv2d from now on (env TGATE_GEMM sets the initial one). */
export function setGemmStrategy(s: GemmStrategy): void {
  if (!STRATEGIES.includes(s)) throw new Error(`unknown GEMM strategy "${s}"; choose one of ${STRATEGIES.join(', ')}`);
  strategy = s;
}

export function getGemmStrategy(): GemmStrategy { return strategy; }

/** Smallest weight (elements) that 'auto' streams: 1 MiB of fp32. SD-1.5 then keeps 7.2 M parameters packed (29 MB). */
export const AUTO_MIN_STREAMED = 1 << 18;

/** Whether the current strategy and backend stream large weights (the ones that decide whether a model fits). */
export function streamsWeights(): boolean {
  return strategy === 'streamed' || (strategy === 'auto' && tf.getBackend() === 'wasm');
}

/** Whether a weight of `size` elements is streamed now. */
export function streamsWeight(size: number): boolean {
  return strategy === 'streamed' || (streamsWeights() && size >= AUTO_MIN_STREAMED);
}

/**
 * [r, c] → [c, r]. wasm's 2-D transpose writes with a stride of r floats, which misses the cache on tall
 * inputs (8× slower at 8192×320); moving 8-float runs first and then transposing 8-wide strips does not.
 * With `consume`, `x` is disposed as soon as the first pass has read it: converting a weight in place then
 * holds one extra copy of it in flight, never two (layers/streamed-weights.ts).
 */
export function transpose2d(x: tf.Tensor2D, consume = false): tf.Tensor2D {
  const [r, c] = x.shape;
  if (c % 8 !== 0 || r < 64) {
    const out = tf.transpose(x);
    if (consume) x.dispose();
    return out;
  }
  const runs = tf.tidy(() => x.reshape([r, c / 8, 8]).transpose([1, 0, 2]));
  if (consume) x.dispose();
  const out = tf.tidy(() => runs.transpose([0, 2, 1]).reshape([c, r]) as tf.Tensor2D);
  runs.dispose();
  return out;
}

/**
 * On WebGPU a UNet forward is bound by per-dispatch cost (~100 µs through Dawn), not arithmetic, so there the
 * bias is added inside the GEMM's kernel. Elsewhere the separate add is kept: tfjs-backend-cpu's fused
 * kernels bypass the faster kernels src/backend-cpu-fast.ts registers, and the result is the same sum.
 */
function fusesBias(): boolean {
  return tf.getBackend() === 'webgpu';
}

/** x · w (+ bias), `w` as matMul's B ([in, out]). */
export function matMulBias(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D {
  if (bias && fusesBias()) return tf.fused.matMul({ a: x, b: w, bias }) as tf.Tensor2D;
  return tf.tidy(() => (bias ? tf.add<tf.Tensor2D>(tf.matMul(x, w), bias) : tf.matMul(x, w)));
}

/** conv2d(x, w) (+ bias), `w` HWIO. */
export function conv2dBias(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pad: number | 'valid', bias?: tf.Tensor): tf.Tensor4D {
  if (bias && fusesBias()) return tf.fused.conv2d({ x, filter: w, strides: stride, pad, bias });
  return tf.tidy(() => (bias ? tf.add<tf.Tensor4D>(tf.conv2d(x, w, stride, pad), bias) : tf.conv2d(x, w, stride, pad)));
}

/** y[rows, out] = x[rows, in] · W (+ bias), with `w` in the streamed layout [out, in]. */
export function matMulStreamed(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const y = transpose2d(tf.matMul(w, transpose2d(x)));
    return bias ? tf.add<tf.Tensor2D>(y, bias) : y;
  });
}

/**
 * im2col, transposed: [kh·kw·C, B·Ho·Wo] with rows in (tap, channel) order. The patches come from XNNPACK:
 * each channel of each image is convolved as its own 1-channel image with kh·kw one-hot filters, which
 * copies every tap exactly (x·1 + 0·others) and handles stride and padding.
 */
function im2colT(x: tf.Tensor4D, kh: number, kw: number, stride: number, pad: number | 'valid'): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const taps = kh * kw;
    const planes = transpose2d(x.reshape([b * h * w, c])).reshape([c * b, h, w, 1]) as tf.Tensor4D;
    const eye = tf.eye(taps).reshape([kh, kw, 1, taps]) as tf.Tensor4D;
    const patches = tf.conv2d(planes, eye, stride, pad);
    const [, ho, wo] = patches.shape;
    return patches.reshape([c, b * ho * wo, taps]).transpose([2, 0, 1]).reshape([taps * c, b * ho * wo]) as tf.Tensor2D;
  });
}

/**
 * conv2d(x, W) (+ bias) with `w` in the streamed layout [O, kh·kw·I]: a 1×1 stride-1 unpadded convolution is a
 * matMul over channels; anything else is one GEMM over {@link im2colT}.
 */
export function conv2dStreamed(
  x: tf.Tensor4D, w: tf.Tensor2D, kernelSize: number, stride: number, pad: number | 'valid', bias?: tf.Tensor,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, wd, c] = x.shape;
    const co = w.shape[0];
    if (kernelSize === 1 && stride === 1 && (pad === 'valid' || pad === 0)) {
      return matMulStreamed(x.reshape([b * h * wd, c]), w, bias).reshape([b, h, wd, co]) as tf.Tensor4D;
    }
    const cols = im2colT(x, kernelSize, kernelSize, stride, pad);
    const p = cols.shape[1];
    let y: tf.Tensor = transpose2d(tf.matMul(w, cols));
    if (bias) y = tf.add(y, bias);
    // Output size as conv2d computes it, from the patches' count: p = b·ho·wo.
    const pads = pad === 'valid' ? 0 : pad;
    const ho = Math.floor((h + 2 * pads - kernelSize) / stride) + 1;
    const wo = p / (b * ho);
    return y.reshape([b, ho, wo, co]) as tf.Tensor4D;
  });
}
