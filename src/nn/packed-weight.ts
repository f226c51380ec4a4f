/**
 * Weights held in the backend in a form only the layer that owns them reads (Linear, Conv2d, Embedding):
 *
 * - **float16**: IEEE halves packed two per element of an int32 tensor, element i of the weight (row-major,
 *   our layout) in bits 16·(i mod 2) … of element ⌊i/2⌋ (little-endian: the bytes of a Uint16Array of the
 *   halves, which is what a `--quantize float16` shard holds). TF.js has no float16 dtype, but a tensor's
 *   bytes are what a WGSL kernel reads: `unpack2x16float` (core WGSL, no `shader-f16` feature needed) turns
 *   one element into two f32s. So `tf.memory().numBytes` of such a weight is half its float32 size.
 * - **row pieces**: a table larger than {@link MAX_PIECE_BYTES} (one binding on a browser's WebGPU by
 *   default) is held as several tensors of consecutive rows, each within it, and read row by row. T5-XXL's
 *   526 MB embedding table is five pieces in float32, three in float16.
 *
 * Packing happens in JS before any tensor exists, so neither a float32 copy nor an oversized buffer is ever
 * created in the backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { toHalves } from './float16.js';

/** How a parameter is stored in the backend: float32 as loaded, or packed IEEE halves (see the module comment). */
export type WeightDtype = 'float32' | 'float16';

/** Largest piece of a split table: 128 MiB, browsers' default `maxStorageBufferBindingSize`. */
export const MAX_PIECE_BYTES = 128 * 2 ** 20;

let pieceBytes = MAX_PIECE_BYTES;

/** The piece size tables are split at from now on (tests use small ones); null returns to {@link MAX_PIECE_BYTES}. */
export function setPieceBytes(bytes: number | null): void {
  if (bytes !== null && !(bytes > 0)) throw new Error(`setPieceBytes: bytes must be positive or null, got ${bytes}`);
  pieceBytes = bytes ?? MAX_PIECE_BYTES;
}

/** The piece size in force (see {@link setPieceBytes}). */
export const pieceLimit = (): number => pieceBytes;

export const bytesPerElement = (dtype: WeightDtype): number => (dtype === 'float16' ? 2 : 4);

/** A weight's backend tensors: one piece, or rows split into pieces of {@link rowsPerPiece} rows (the last may be shorter). */
export class PackedWeight {
  private constructor(
    readonly dtype: WeightDtype, readonly shape: number[], readonly pieces: tf.Tensor[], readonly rowsPerPiece: number,
  ) {}

  /** Elements per row (product of the shape after the first axis). */
  get rowSize(): number { return this.shape.slice(1).reduce((a, b) => a * b, 1); }

  /** Rows held by piece i. */
  pieceRows(i: number): number { return Math.min(this.rowsPerPiece, this.shape[0]! - i * this.rowsPerPiece); }

  dispose(): void { tf.dispose(this.pieces); }

  /** The IEEE half bits of every element, in order, read back from the backend (float16 weights only). */
  async readHalves(): Promise<Uint16Array> {
    if (this.dtype !== 'float16') throw new Error(`readHalves: this weight is held as ${this.dtype}, not float16`);
    const out = new Uint16Array(this.shape.reduce((a, b) => a * b, 1));
    let at = 0;
    for (const [i, piece] of this.pieces.entries()) {
      const n = this.pieceRows(i) * this.rowSize;
      const words = await piece.data() as Int32Array;
      out.set(new Uint16Array(words.buffer, words.byteOffset, n), at);
      at += n;
    }
    return out;
  }

  /**
   * Creates the backend tensors from values in our layout: float32 values (packed to halves here for
   * float16), or IEEE half bits (for float16 only), used as they are where the bytes allow. `maxPieceBytes`
   * null keeps one piece whatever the size.
   */
  static fromValues(values: Float32Array | Uint16Array, shape: number[], dtype: WeightDtype, maxPieceBytes: number | null): PackedWeight {
    const size = shape.reduce((a, b) => a * b, 1);
    if (values.length !== size) throw new Error(`weight of shape [${shape}] needs ${size} values, got ${values.length}`);
    if (values instanceof Uint16Array && dtype !== 'float16') throw new Error('half-precision values can only fill a float16 weight');
    const rows = shape[0] ?? 1;
    const rowSize = size / rows;
    const rowBytes = Math.max(1, rowSize * bytesPerElement(dtype));
    const rowsPerPiece = maxPieceBytes === null ? rows : Math.max(1, Math.min(rows, Math.floor(maxPieceBytes / rowBytes)));
    const pieces: tf.Tensor[] = [];
    try {
      for (let r = 0; r < rows || pieces.length === 0; r += rowsPerPiece) {
        const n = Math.min(rowsPerPiece, rows - r);
        const part = values.subarray(r * rowSize, (r + n) * rowSize);
        const pieceShape = [n, ...shape.slice(1)];
        pieces.push(dtype === 'float16' ? packedHalves(part) : tf.tensor(part as Float32Array, pieceShape, 'float32'));
      }
    } catch (e) {
      tf.dispose(pieces);
      throw e;
    }
    return new PackedWeight(dtype, shape, pieces, rowsPerPiece);
  }
}

/**
 * An int32 tensor of ⌈n/2⌉ elements holding n halves: the given bits as they are (their own buffer, when
 * they fill it: TF.js keeps the array until the tensor's first use, so a view would keep a whole shard
 * alive), or float32 values rounded to nearest even.
 */
function packedHalves(values: Float32Array | Uint16Array): tf.Tensor {
  const words = Math.ceil(values.length / 2);
  if (values instanceof Uint16Array && values.length % 2 === 0 && values.byteOffset === 0 && values.byteLength === values.buffer.byteLength) {
    return tf.tensor1d(new Int32Array(values.buffer, 0, words), 'int32');
  }
  const out = new Int32Array(words);
  const halves = new Uint16Array(out.buffer, 0, values.length);
  if (values instanceof Uint16Array) halves.set(values);
  else toHalves(values, halves);
  return tf.tensor1d(out, 'int32');
}
