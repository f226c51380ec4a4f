/**
 * tfjs-core's Node bundle does not register the chained tensor methods (x.reshape(), x.add(b), …), and the
 * file that does (dist/public/chained_ops/register_all_chained_ops.js) is extensionless ESM that neither
 * Node's loader nor jest can import. We take its types and install the same methods ourselves.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as _chainedOpTypes from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';

/** Registers the chained tensor methods (x.reshape(), x.add(b), …) that tfjs-core's node bundle leaves out. */
function registerChainedOps(): void {
  const proto = tf.Tensor.prototype as unknown as Record<string, unknown>;
  const ops = tf as unknown as Record<string, (...a: unknown[]) => tf.Tensor>;
  const same = ('abs acos acosh add all any argMax argMin asin asinh atan atan2 atanh batchToSpaceND batchNorm broadcastTo cast ' +
    'ceil clipByValue conv1d conv2d cos cosh cumprod cumsum depthToSpace div divNoNan dot elu equal erf euclideanNorm exp ' +
    'expandDims expm1 floor floorDiv gather greater greaterEqual isFinite isInf isNaN leakyRelu less lessEqual log log1p ' +
    'logSigmoid logSoftmax logSumExp logicalAnd logicalNot logicalOr logicalXor matMul max maximum mean min minimum mirrorPad ' +
    'mod mul neg norm notEqual oneHot onesLike pad pool pow prelu prod reciprocal relu relu6 reshape reverse round rsqrt selu ' +
    'sigmoid sign sin sinh slice softmax softplus spaceToBatchND split sqrt square squaredDifference squeeze step stridedSlice ' +
    'sub sum tan tanh tile topk transpose unique unstack zerosLike').split(' ');
  const special: Record<string, (this: tf.Tensor, ...a: never[]) => unknown> = {
    asType(dtype: tf.DataType) { return tf.cast(this, dtype); },
    toFloat() { return tf.cast(this, 'float32'); },
    toInt() { return tf.cast(this, 'int32'); },
    toBool() { return tf.cast(this, 'bool'); },
    flatten() { return tf.reshape(this, [this.size]); },
    reshapeAs(x: tf.Tensor) { return tf.reshape(this, x.shape); },
    as1D() { return tf.reshape(this, [this.size]); },
    asScalar() { return tf.reshape(this, []); },
    concat(x: tf.Tensor | tf.Tensor[], axis?: number) { return tf.concat([this, ...(Array.isArray(x) ? x : [x])], axis); },
    stack(x: tf.Tensor | tf.Tensor[], axis?: number) { return tf.stack([this, ...(Array.isArray(x) ? x : [x])], axis); },
    where(condition: tf.Tensor, x: tf.Tensor) { return tf.where(condition, this, x); },
  };
  for (const name of same) {
    if (typeof proto[name] === 'function' || typeof ops[name] !== 'function') continue;
    proto[name] = function (this: tf.Tensor, ...args: unknown[]) { this.throwIfDisposed(); return ops[name](this, ...args); };
  }
  for (const [name, fn] of Object.entries(special)) {
    if (typeof proto[name] !== 'function') proto[name] = function (this: tf.Tensor, ...args: never[]) { this.throwIfDisposed(); return fn.apply(this, args); };
  }
}
registerChainedOps();
