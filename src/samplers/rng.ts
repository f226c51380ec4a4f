/**
 * Small deterministic Gaussian RNG (PCG32 + Box–Muller): a seed gives the same stream on every platform and
 * backend, drawn on the CPU in plain JS and only then uploaded. Pipelines default to the torch-compatible
 * TorchGenerator instead, so seeds match diffusers'.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NoiseSource } from './torch-generator.js';

/** PCG32 (XSH-RR) uniform generator + Box–Muller normals. */
export class Rng implements NoiseSource {
  private state: bigint;
  private readonly inc: bigint;
  private spare: number | null = null;
  private static readonly MULT = 6364136223846793005n;
  private static readonly MASK64 = (1n << 64n) - 1n;

  /** @param seed any integer; the same seed always yields the same sequence. */
  constructor(seed: number | bigint = 0) {
    this.inc = ((BigInt(seed) << 1n) | 1n) & Rng.MASK64;
    this.state = 0n;
    this.nextUint32();
    this.state = (this.state + (BigInt(seed) & Rng.MASK64)) & Rng.MASK64;
    this.nextUint32();
  }

  /** Next uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const old = this.state;
    this.state = (old * Rng.MULT + this.inc) & Rng.MASK64;
    const xorshifted = Number((((old >> 18n) ^ old) >> 27n) & 0xffffffffn);
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << ((32 - rot) & 31))) >>> 0;
  }

  /** Uniform in the open interval (0, 1) with 53 random bits (never 0, so log() below is finite). */
  uniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo + 0.5) / 9007199254740992;
  }

  /** One standard normal sample (Box–Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** A float32 tensor of standard normals with the given shape (caller owns it). */
  randn(shape: number[]): tf.Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = this.normal();
    return tf.tensor(data, shape, 'float32');
  }
}
