/**
 * `torch.Generator().manual_seed(seed)` + `torch.randn` on the CPU, reproduced exactly: mt19937, 24-bit
 * uniforms, and Box–Muller over blocks of 16 in float32 as ATen's normal_fill does. With it a seed gives
 * the initial latents (and ancestral-sampler noise) that diffusers gives for the same seed.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Anything that draws standard-normal tensors (our PCG `Rng`, or this torch-compatible generator). */
export interface NoiseSource {
  randn(shape: number[]): tf.Tensor;
}

const f = Math.fround;

/** ATen normal_fill_16: uniforms in place → normals, pairs (j, j+8) of a block of 16. */
function normalFill16(d: Float32Array, at: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - d[at + j]);
    const u2 = d[at + j + 8];
    const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(2 * Math.PI * u2); // ATen: 2.0f * pi<double> * u2, in double
    d[at + j] = f(radius * f(Math.cos(theta)));
    d[at + j + 8] = f(radius * f(Math.sin(theta)));
  }
}

export class TorchGenerator implements NoiseSource {
  private readonly mt = new Uint32Array(624);
  private idx = 624;

  constructor(readonly seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be an integer in 0…2^32−1, got ${seed}`);
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) this.mt[i] = (Math.imul(1812433253, this.mt[i - 1] ^ (this.mt[i - 1] >>> 30)) + i) >>> 0;
  }

  /** Next 32-bit output of mt19937. */
  nextUint32(): number {
    const s = this.mt;
    if (this.idx >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (s[k] & 0x80000000) | (s[(k + 1) % 624] & 0x7fffffff);
        s[k] = s[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.idx = 0;
    }
    let y = s[this.idx++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `torch.randn(shape, generator)` for at least 16 elements (float32, CPU). */
  randnValues(n: number): Float32Array {
    if (n < 16) throw new Error(`torch-compatible randn needs at least 16 values (got ${n}): torch uses another path below 16`);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = (this.nextUint32() & 0xffffff) / 16777216;
    for (let i = 0; i + 16 <= n; i += 16) normalFill16(d, i);
    if (n % 16 !== 0) {
      // ATen recomputes the last 16 values from fresh uniforms.
      for (let i = n - 16; i < n; i++) d[i] = (this.nextUint32() & 0xffffff) / 16777216;
      normalFill16(d, n - 16);
    }
    return d;
  }

  randn(shape: number[]): tf.Tensor {
    return tf.tensor(this.randnValues(shape.reduce((a, b) => a * b, 1)), shape, 'float32');
  }
}
