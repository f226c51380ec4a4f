/**
 * Seeded random weights for a model built from its config, presented as a PyTorch checkpoint (its keys, in
 * PyTorch shapes), so that `tgate convert` can write them like any checkpoint (`ConvertOptions.weightSource`).
 */
import type { Module, WeightSource } from '../src/nn/module.js';
import { randomNormalHost } from '../src/nn/host-weights.js';

/** Standard deviation of every tensor (as bench/run-bench.ts and `Module.initRandom`). */
const STD = 0.02;

/**
 * Every tensor N(0, 0.02²), each from its own seed (the model's seed and the tensor's index), except the
 * scales of normalisation layers (1-D `…norm….weight`: GroupNorm, LayerNorm), which are 1 + N(0, 0.02²):
 * scales near 0 would silence every residual branch, and outputs that barely depend on the weights would
 * make a comparison of two runs say little.
 */
export class SeededWeightSource implements WeightSource {
  readonly name: string;
  private readonly params = new Map<string, { shape: number[]; size: number; index: number; scale: boolean }>();

  constructor(model: Module, private readonly seed: number, label: string) {
    this.name = `seeded random weights (${label}, seed ${seed})`;
    let index = 0;
    for (const [key, p] of model.namedParameters()) {
      const scale = p.shape.length === 1 && /norm[^.]*\.weight$/.test(key);
      this.params.set(key, { shape: p.torchShape, size: p.size, index: index++, scale });
    }
  }

  keys(): string[] { return [...this.params.keys()]; }

  shape(key: string): number[] { return [...this.entry(key).shape]; }

  async read(key: string): Promise<Float32Array> {
    const e = this.entry(key);
    const v = randomNormalHost(e.size, STD, this.seed * 100003 + e.index);
    if (e.scale) for (let i = 0; i < v.length; i++) v[i] += 1;
    return v;
  }

  async close(): Promise<void> {}

  private entry(key: string): { shape: number[]; size: number; index: number; scale: boolean } {
    const e = this.params.get(key);
    if (!e) throw new Error(`${this.name}: no tensor "${key}"`);
    return e;
  }
}
