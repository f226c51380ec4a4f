/** The fast cpu kernels against the stock tfjs-backend-cpu kernels they wrap. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { FAST_CPU_KERNELS, installFastCpuKernels, originalCpuKernels } from '../src/backends/cpu-fast/index.js';

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;

let seed = 1;
function rand(): number {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}
function randT(shape: number[], dtype: 'float32' | 'int32' = 'float32'): tf.Tensor {
  const n = shape.reduce((p, q) => p * q, 1);
  const v = dtype === 'float32' ? Float32Array.from({ length: n }, () => (rand() * 2 - 1) * 3 + 0.01) : Int32Array.from({ length: n }, () => Math.floor(rand() * 20) - 10);
  return tf.tensor(v, shape, dtype);
}

/** ‖a−b‖/‖b‖ in float64, NaN/Inf positions must coincide; 0 when both are empty or all zero. */
function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(b[i]) || !Number.isFinite(a[i])) { expect(Object.is(a[i], b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i]))).toBe(true); continue; }
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

const asList = (r: Info | Info[]): Info[] => (Array.isArray(r) ? r : [r]);

/**
 * Runs the fast path directly (asserting whether it handled the case) and the stock kernel, and compares.
 * Returns the worst rel-L2 over the outputs.
 */
function check(name: string, inputs: Record<string, tf.Tensor>, attrs: Attrs, expectFast = true): number {
  const backend = tf.backend() as unknown as Parameters<(typeof FAST_CPU_KERNELS)[string]>[0]['backend'];
  const args = { inputs: inputs as unknown as Record<string, Info>, backend, attrs };
  const fast = FAST_CPU_KERNELS[name](args);
  expect({ name, shapes: Object.values(inputs).map((t) => t.shape), attrs, fast: fast !== null }).toEqual({ name, shapes: Object.values(inputs).map((t) => t.shape), attrs, fast: expectFast });
  const stock = originalCpuKernels[name].kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as Info | Info[];
  const eng = tf.engine();
  const s = asList(stock).map((i) => eng.makeTensorFromTensorInfo(i));
  // Through the registry too: the wrapper must give the same answer as calling the fast path.
  const ran = eng.runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  const viaRegistry: tf.Tensor[] = Array.isArray(ran) ? ran : [ran];
  let worst = 0;
  const f = fast ? asList(fast).map((i) => eng.makeTensorFromTensorInfo(i)) : viaRegistry;
  expect(f.length).toBe(s.length);
  for (let i = 0; i < s.length; i++) {
    for (const t of [f[i], viaRegistry[i]]) {
      expect(t.shape).toEqual(s[i].shape);
      expect(t.dtype).toBe(s[i].dtype);
      worst = Math.max(worst, rel(t.dataSync() as Float32Array, s[i].dataSync() as Float32Array));
    }
  }
  tf.dispose([...s, ...viaRegistry, ...(fast ? f : [])]);
  expect(worst).toBeLessThanOrEqual(1e-6);
  return worst;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  installFastCpuKernels();
});

test('install is idempotent and wraps every kernel', () => {
  expect(installFastCpuKernels()).toEqual([]);
  expect(Object.keys(originalCpuKernels).sort()).toEqual(Object.keys(FAST_CPU_KERNELS).sort());
});

const BIN = ['Add', 'Sub', 'Multiply', 'RealDiv', 'Maximum', 'Minimum', 'SquaredDifference'];
const PAIRS: [number[], number[]][] = [
  [[], []], [[], [3, 4]], [[3, 4], []], [[7], [1]], [[7], [7]], [[5], [2, 5]], [[2, 5], [5]],
  [[2, 8, 16, 1], [2, 8, 16, 8]], [[2, 8, 16, 8], [2, 8, 16, 1]], [[2, 64, 4, 1], [2, 1, 4, 1]],
  [[2, 1, 3, 1], [2, 4, 3, 5]], [[3, 1], [1, 4]], [[1, 2, 1, 3, 1, 2], [2, 1, 4, 1, 5, 1]],
  [[2, 3, 4, 5, 6], [3, 1, 5, 1]], [[0, 3], [1, 3]], [[0], []], [[4, 1, 6], [4, 5, 6]],
];

test.each(BIN)('%s: float32 broadcasting matches the stock kernel', (name) => {
  let worst = 0;
  for (const [sa, sb] of PAIRS) {
    const a = randT(sa), b = randT(sb);
    worst = Math.max(worst, check(name, { a, b }, {}));
    tf.dispose([a, b]);
  }
  // int32 and mixed inputs go to the stock kernel.
  const ai = randT([3, 4], 'int32'), bi = randT([4], 'int32');
  if (name !== 'RealDiv') check(name, { a: ai, b: bi }, {}, false);
  tf.dispose([ai, bi]);
  expect(worst).toBeLessThanOrEqual(1e-6);
});

test('binary: NaN and infinities propagate as in the stock kernel', () => {
  const a = tf.tensor([NaN, 1, -Infinity, 0, 2, Infinity], [2, 3]);
  const b = tf.tensor([0, NaN, 3], [3]);
  for (const n of BIN) check(n, { a, b }, {});
  tf.dispose([a, b]);
});

test('Softmax over the last axis', () => {
  for (const s of [[5], [3, 7], [2, 3, 4, 1000], [2, 0], [1, 1], [2, 3, 4, 5, 6], [1, 2, 1, 3, 2, 9]]) {
    const x = tf.mul(randT(s), 4);
    check('Softmax', { logits: x }, { dim: -1 });
    check('Softmax', { logits: x }, { dim: s.length - 1 });
    x.dispose();
  }
  const big = tf.tensor([[1000, -1000, 0, NaN], [88, 89, 90, 91]]);
  check('Softmax', { logits: big }, { dim: -1 });
  big.dispose();
  const sc = tf.scalar(3);
  expect(FAST_CPU_KERNELS.Softmax({ inputs: { logits: sc }, backend: tf.backend() as never, attrs: { dim: -1 } })).toBeNull();
  sc.dispose();
});

test.each(['Sum', 'Mean', 'Max'])('%s over any axes', (name) => {
  const key = name === 'Max' ? 'reductionIndices' : 'axis';
  const cases: [number[], unknown][] = [
    [[5], 0], [[5], -1], [[3, 4], null], [[3, 4], [0]], [[3, 4], [1, 0]], [[2, 1024, 32, 1], [1, 3]],
    [[2, 3, 4, 5, 6, 2], [1, 4]], [[2, 3, 4, 5], [-1, 0]], [[2, 0, 3], [2]], [[], []], [[4, 3], []],
  ];
  for (const [s, axis] of cases) {
    const x = randT(s);
    for (const keepDims of [false, true]) {
      if (name === 'Max' && s.includes(0)) continue;
      check(name, { x }, { [key]: axis, keepDims });
    }
    x.dispose();
  }
  const xi = randT([3, 4], 'int32');
  check(name, { x: xi }, { [key]: [1], keepDims: false }, false);
  xi.dispose();
});

test('Transpose rank 1-6, float32 and int32', () => {
  const cases: [number[], number[]][] = [
    [[5], [0]], [[3, 4], [1, 0]], [[2, 1024, 8, 4], [0, 2, 1, 3]], [[2, 3, 4], [2, 0, 1]],
    [[2, 3, 4, 5, 2], [4, 2, 0, 3, 1]], [[2, 1, 3, 2, 1, 4], [5, 4, 3, 2, 1, 0]], [[0, 3], [1, 0]], [[], []],
  ];
  for (const [s, perm] of cases) {
    for (const dt of ['float32', 'int32'] as const) {
      const x = randT(s, dt);
      check('Transpose', { x }, { perm });
      x.dispose();
    }
  }
});

test('Slice and SplitV', () => {
  const x = randT([2, 6, 8, 3]);
  const xi = randT([2, 6, 8, 3], 'int32');
  for (const t of [x, xi]) {
    check('Slice', { x: t }, { begin: [0, 1, 2, 0], size: [2, 3, 4, 3] });
    check('Slice', { x: t }, { begin: [1, 0, 0, 1], size: [-1, -1, -1, 2] });
    check('Slice', { x: t }, { begin: [0, 2, 0, 0], size: [2, 0, 8, 3] });
    check('Slice', { x: t }, { begin: [1, 0, 0, 0], size: [1, 6, 8, 3] }, false); // contiguous: stock view
    check('SplitV', { x: t }, { numOrSizeSplits: 2, axis: 2 });
    check('SplitV', { x: t }, { numOrSizeSplits: [1, -1, 2], axis: -1 });
    check('SplitV', { x: t }, { numOrSizeSplits: [2, 4], axis: 1 });
    check('SplitV', { x: t }, { numOrSizeSplits: 2, axis: 0 });
  }
  tf.dispose([x, xi]);
});

test('BatchMatMul with transposes, k-blocking and batch broadcasting', () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[3, 5], [5, 4], false, false], [[5, 3], [5, 4], true, false], [[3, 5], [4, 5], false, true],
    [[5, 3], [4, 5], true, true], [[2, 8, 64, 4], [2, 8, 64, 4], false, true], [[2, 8, 64, 130], [2, 8, 130, 4], false, false],
    [[3, 7, 100], [100, 9], false, false], [[1, 7, 100], [4, 100, 9], false, false], [[2, 3, 0], [2, 0, 4], false, false],
    [[2, 0, 3], [2, 3, 4], false, false],
  ];
  for (const [sa, sb, transposeA, transposeB] of cases) {
    const a = randT(sa), b = randT(sb);
    check('BatchMatMul', { a, b }, { transposeA, transposeB });
    tf.dispose([a, b]);
  }
});

test('ops through the public API give the stock results (softmax of attention scores)', () => {
  const q = randT([2, 2, 16, 8]), k = randT([2, 2, 16, 8]);
  const logits = tf.mul(tf.matMul(q, k, false, true), 0.35);
  const s = tf.softmax(logits);
  const ref = originalCpuKernels.Softmax.kernelFunc({
    inputs: { logits }, backend: tf.backend(), attrs: { dim: -1 },
  } as unknown as Parameters<tf.KernelFunc>[0]) as Info;
  const r = tf.engine().makeTensorFromTensorInfo(ref);
  expect(rel(s.dataSync(), r.dataSync())).toBeLessThanOrEqual(1e-6);
  tf.dispose([q, k, logits, s, r]);
});

test.each(['Exp', 'Sigmoid', 'Erf', 'Rsqrt', 'Tanh'])('%s unary', (name) => {
  for (const s of [[], [0], [7], [3, 4, 5], [2, 1, 3, 1, 2, 4]]) {
    const x = name === 'Rsqrt' ? tf.abs(randT(s)) : randT(s);
    check(name, { x }, {});
    x.dispose();
  }
  const sp = tf.tensor([0, -0, NaN, Infinity, -Infinity, 1e-30, -20, 20]);
  check(name, { x: sp }, {});
  sp.dispose();
  const xi = randT([4], 'int32');
  check(name, { x: xi }, {}, false);
  xi.dispose();
});

test('BatchMatMul: long rows, short rows, both transposes, k > blockSize', () => {
  for (const [M, K, N] of [[9, 100, 20], [9, 100, 3], [33, 4, 40], [5, 49, 16]]) {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        const a = randT(tA ? [2, K, M] : [2, M, K]), b = randT(tB ? [N, K] : [K, N]);
        check('BatchMatMul', { a, b }, { transposeA: tA, transposeB: tB });
        tf.dispose([a, b]);
      }
    }
  }
});

test('Conv2D NHWC: padding, strides, dilations', () => {
  const cases: [number[], number[], Attrs][] = [
    [[2, 8, 8, 3], [3, 3, 3, 5], { strides: 1, pad: 'same' }],
    [[1, 9, 7, 4], [3, 3, 4, 2], { strides: [2, 2], pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }],
    [[1, 9, 7, 4], [3, 2, 4, 2], { strides: [1, 2], pad: 'valid', dilations: [2, 1] }],
    [[2, 5, 5, 6], [1, 1, 6, 3], { strides: 1, pad: 0 }],
  ];
  for (const [xs, ws, a] of cases) {
    const x = randT(xs), w = randT(ws);
    check('Conv2D', { x, filter: w }, { dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined, ...a });
    tf.dispose([x, w]);
  }
  const x = randT([1, 3, 5, 5]), w = randT([3, 3, 3, 2]);
  check('Conv2D', { x, filter: w }, { strides: 1, pad: 'same', dataFormat: 'NCHW', dilations: 1 }, false);
  tf.dispose([x, w]);
});
