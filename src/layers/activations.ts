/** Activation functions with PyTorch's definitions. */
import * as tf from '@tensorflow/tfjs-core';
import { kernels } from '../backends/kernels.js';

export type ActivationName = 'silu' | 'swish' | 'gelu' | 'gelu_tanh' | 'gelu_new' | 'gelu_pytorch_tanh' | 'quick_gelu' | 'relu' | 'mish';

/** Every name {@link activation} accepts (configs are checked against it). */
export const ACTIVATION_NAMES: readonly ActivationName[] = ['silu', 'swish', 'gelu', 'gelu_tanh', 'gelu_new', 'gelu_pytorch_tanh', 'quick_gelu', 'relu', 'mish'];

export const silu = (x: tf.Tensor): tf.Tensor => kernels().silu?.(x) ?? tf.tidy(() => tf.mul(x, tf.sigmoid(x)));

/** Exact GELU: x·Φ(x) = ½x(1 + erf(x/√2)). */
export const gelu = (x: tf.Tensor): tf.Tensor => tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));

/** GELU with the tanh approximation (`approximate="tanh"`). */
export const geluTanh = (x: tf.Tensor): tf.Tensor => tf.tidy(() => {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
});

/** CLIP's quick_gelu: x·σ(1.702x). */
export const quickGelu = (x: tf.Tensor): tf.Tensor => tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));

export const mish = (x: tf.Tensor): tf.Tensor => tf.tidy(() => tf.mul(x, tf.tanh(tf.softplus(x))));

export function activation(name: string): (x: tf.Tensor) => tf.Tensor {
  switch (name) {
    case 'silu': case 'swish': return silu;
    case 'gelu': return gelu;
    case 'gelu_tanh': case 'gelu_new': case 'gelu_pytorch_tanh': return geluTanh;
    case 'quick_gelu': return quickGelu;
    case 'relu': return tf.relu;
    case 'mish': return mish;
    default: throw new Error(`unsupported activation "${name}" (supported: silu, gelu, gelu_tanh, quick_gelu, relu, mish)`);
  }
}
