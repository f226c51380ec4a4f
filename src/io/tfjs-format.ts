/**
 * The TF.js weights format (`model.json` + binary shards), as written by `tgate convert` and read back in
 * Node or the browser. This module is the format's public entry point; the parts live in:
 *
 * - `tfjs-manifest.ts`: `model.json` types, shard naming and sizing, the shard packer (writing);
 * - `tfjs-quantize.ts`: float32 / float16 / uint8 element codecs;
 * - `tfjs-shard-stores.ts`: shard bytes from local files or `fetch` (reading);
 * - `tfjs-weight-source.ts`: {@link TfjsWeightSource}, a converted component as a weight source.
 *
 * None of them has static Node imports: the browser bundle must not pull in `fs`.
 */
export {
  QUANTIZE_MODES,
  STORED_BYTES,
  ShardPacker,
  buildModelJson,
  shardBytesFor,
  shardFileName,
  type QuantizeMode,
  type TfjsModelJson,
  type TfjsWeightEntry,
  type TfjsWeightGroup,
  type TgateMetadata,
} from './tfjs-manifest.js';
export { decodeStored, encodeStored, f32ToF16Bits, storedByteLength, uint8Params } from './tfjs-quantize.js';
export type { FetchProgress, TfjsOpenOptions } from './tfjs-shard-stores.js';
export { TfjsWeightSource } from './tfjs-weight-source.js';
