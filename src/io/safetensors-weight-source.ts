/** WeightSource over one or more safetensors files (a sharded checkpoint is several files, one key space). */
import type { WeightSource } from '../nn/module.js';
import type { SafetensorsFile } from './safetensors.js';

export class SafetensorsWeightSource implements WeightSource {
  private readonly where = new Map<string, SafetensorsFile>();
  readonly name: string;

  constructor(readonly files: SafetensorsFile[]) {
    this.name = files.map((f) => f.name).join(', ');
    for (const f of files) {
      for (const k of f.keys()) {
        const prev = this.where.get(k);
        if (prev) throw new Error(`tensor "${k}" appears in both ${prev.name} and ${f.name}`);
        this.where.set(k, f);
      }
    }
  }

  keys(): string[] { return [...this.where.keys()]; }

  private file(key: string): SafetensorsFile {
    const f = this.where.get(key);
    if (!f) throw new Error(`${this.name}: no tensor "${key}"`);
    return f;
  }

  shape(key: string): number[] { return this.file(key).info(key).shape; }

  async read(key: string): Promise<Float32Array> {
    const { values, dtype } = await this.file(key).readValues(key);
    if (dtype !== 'float32') throw new Error(`${this.file(key).name}: weight "${key}" has integer dtype ${this.file(key).info(key).dtype}`);
    return values as Float32Array;
  }

  async close(): Promise<void> { await Promise.all(this.files.map((f) => f.close())); }
}
