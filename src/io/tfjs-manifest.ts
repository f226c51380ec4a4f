/**
 * The layout of a converted component in the TF.js weights format: `model.json` (tf.io's weights manifest
 * plus our `userDefinedMetadata.tgate` record), the shard file names and sizes, and the packer that cuts a
 * weight group's byte stream into shards as `tgate convert` writes them.
 *
 * A weight group's shards are one byte stream cut into files (tf.io semantics), so a tensor may start in
 * one shard and end in the next. No Node imports: the browser bundle reads these definitions too.
 */

/** How weights are stored: float32 as is, or quantized. */
export type QuantizeMode = 'none' | 'float16' | 'uint8';

export const QUANTIZE_MODES: QuantizeMode[] = ['none', 'float16', 'uint8'];

/** Bytes per stored element for each mode. */
export const STORED_BYTES: Record<QuantizeMode, number> = { none: 4, float16: 2, uint8: 1 };

/** One tensor in a weights manifest (tf.io `WeightsManifestEntry`, restricted to what we write and read). */
export interface TfjsWeightEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: { dtype: 'float16' | 'uint8'; min?: number; scale?: number };
}

/** A weight group: `paths` concatenated form one byte stream holding `weights` in order. */
export interface TfjsWeightGroup {
  paths: string[];
  weights: TfjsWeightEntry[];
}

/** Our record in `userDefinedMetadata.tgate`: what a loader needs besides the manifest. */
export interface TgateMetadata {
  /** Format version of this record. */
  version: 1;
  /** Tensors are stored in our layouts (HWIO / [in,out]), not PyTorch's. */
  layout: 'tgate-tfjs';
  /** The component's `_class_name` (or transformers `architectures[0]`). */
  className: string;
  /** The component's config.json, as read. */
  config: Record<string, unknown>;
  quantize: QuantizeMode;
  /** Byte size of each shard of group 0, so readers can map offsets without fetching. */
  shardSizes: number[];
}

/** `model.json` as we write it; tf.io tooling reads its `weightsManifest`. */
export interface TfjsModelJson {
  format: string;
  generatedBy: string;
  convertedBy: string;
  modelTopology: null;
  weightsManifest: TfjsWeightGroup[];
  userDefinedMetadata?: { tgate?: TgateMetadata };
}

/** tf.js' shard naming: `group1-shard3of12.bin`. */
export function shardFileName(index: number, count: number, group = 1): string {
  return `group${group}-shard${index + 1}of${count}.bin`;
}

/** Shard size in bytes for `--shard-mb` (MiB), a multiple of 4 so that no stored element straddles shards. */
export function shardBytesFor(shardMb: number): number {
  if (!(shardMb > 0) || !Number.isFinite(shardMb)) throw new Error(`shard size must be a positive number of MiB, got ${shardMb}`);
  return Math.max(4, Math.floor((shardMb * 1024 * 1024) / 4) * 4);
}

/**
 * Packs a byte stream into fixed-size shards and hands each full shard to `sink` (which must be done
 * with the bytes when its promise resolves: one shard buffer is reused). Memory: one shard.
 */
export class ShardPacker {
  readonly shardCount: number;
  readonly shardSizes: number[] = [];
  private readonly buf: Uint8Array;
  private fill = 0;
  private index = 0;
  private written = 0;

  constructor(
    readonly shardBytes: number,
    readonly totalBytes: number,
    private readonly sink: (index: number, count: number, bytes: Uint8Array) => Promise<void>,
  ) {
    if (shardBytes % 4) throw new Error(`shard size ${shardBytes} is not a multiple of 4`);
    this.shardCount = Math.max(1, Math.ceil(totalBytes / shardBytes));
    this.buf = new Uint8Array(Math.min(shardBytes, Math.max(totalBytes, 4)));
  }

  private currentShardLength(): number {
    return Math.min(this.shardBytes, this.totalBytes - this.index * this.shardBytes);
  }

  /**
   * Appends `byteLength` bytes, produced piecewise: `produce(dst, offset)` fills `dst` with the bytes at
   * `offset..offset+dst.length` of this tensor. Pieces end at shard boundaries.
   */
  async append(byteLength: number, produce: (dst: Uint8Array, offset: number) => void): Promise<void> {
    if (this.written + byteLength > this.totalBytes) throw new Error(`shard packer: ${this.written + byteLength} bytes exceed the announced ${this.totalBytes}`);
    let off = 0;
    while (off < byteLength) {
      const room = this.currentShardLength() - this.fill;
      const n = Math.min(room, byteLength - off);
      produce(this.buf.subarray(this.fill, this.fill + n), off);
      this.fill += n;
      off += n;
      this.written += n;
      if (this.fill === this.currentShardLength()) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const len = this.currentShardLength();
    await this.sink(this.index, this.shardCount, this.buf.subarray(0, len));
    this.shardSizes.push(len);
    this.index++;
    this.fill = 0;
  }

  /** Checks that everything announced was written (an empty stream still gets one empty shard). */
  async finish(): Promise<void> {
    if (this.written !== this.totalBytes) throw new Error(`shard packer: wrote ${this.written} of ${this.totalBytes} bytes`);
    if (this.totalBytes === 0) await this.flush();
  }
}

/** Builds `model.json` for one component. */
export function buildModelJson(weights: TfjsWeightEntry[], paths: string[], meta: TgateMetadata): TfjsModelJson {
  return {
    format: 'tgate-tfjs-weights',
    generatedBy: 'diffusers safetensors',
    convertedBy: 'tgate convert',
    modelTopology: null,
    weightsManifest: [{ paths, weights }],
    userDefinedMetadata: { tgate: meta },
  };
}
