/**
 * The safetensors header: an 8-byte little-endian length N, then N bytes of JSON describing each tensor.
 *
 * The rules are the reference reader's (the Rust `safetensors` crate, `read_metadata` and
 * `Metadata::validate`): a header of at most 100,000,000 bytes that is UTF-8 JSON starting with "{"; the
 * tensors, sorted by (begin, end), cover the data section exactly (the first starts at 0, each starts where
 * the previous ends, the last ends at the end of the file); each spans shape × dtype size bytes, computed
 * without overflow; `__metadata__` is an object of strings. Beyond the crate: duplicate keys are an error (the
 * format forbids them; serde keeps the last), and the header's complexity is bounded while it is read (see
 * the limits below), so a hostile header fails in milliseconds with little memory.
 */
import { JsonScanError, JsonScanner, quoted } from './json-scanner.js';

/** Storage dtypes of the safetensors format that we read. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** One tensor's entry in the header. Offsets are absolute (from the start of the file). */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** The crate's MAX_HEADER_SIZE; real checkpoints have headers of a few hundred KB. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Tensors in one file (SDXL's UNet has ~1,700; the largest single files, a few tens of thousands). */
export const MAX_TENSORS = 200_000;
/** Entries in `__metadata__` (real files: a handful, LoRA trainers a few hundred). */
export const MAX_METADATA_ENTRIES = 100_000;
/** Dimensions of one tensor. */
export const MAX_RANK = 16;
/** UTF-8 bytes of a tensor name or metadata key. */
export const MAX_NAME_BYTES = 1024;
/** JSON nesting, reached only by unknown fields (the crate ignores them; real headers nest 3 deep). */
export const MAX_HEADER_DEPTH = 64;

export class SafetensorsError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

/** Reads the header length from the first 8 bytes, checking it against the limit and the file size. */
export function headerLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) throw new SafetensorsError(file, `truncated: ${fileSize} bytes, a safetensors file starts with an 8-byte header length`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(file, `header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  if (Number(n) + 8 > fileSize) throw new SafetensorsError(file, `header length ${n} runs past the end of the file (${fileSize} bytes): truncated or not a safetensors file`);
  return Number(n);
}

interface Entry { name: string; dtype?: string; shape?: number[]; offsets?: number[] }

/**
 * Parses and validates a header (the bytes after the length) of a file of `fileSize` bytes. Returns the
 * tensors in header order and the metadata.
 */
export function parseHeader(
  headerBytes: Uint8Array, fileSize: number, file: string,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const fail: (problem: string) => never = (problem) => { throw new SafetensorsError(file, problem); };
  if (headerBytes[0] !== 0x7b) {
    const found = headerBytes.length ? `byte 0x${headerBytes[0].toString(16).padStart(2, '0')}` : 'an empty header';
    fail(`header is not a JSON object (it must start with "{", found ${found})`);
  }
  const entries: Entry[] = [];
  let metadata: Record<string, string> = {};
  const s = new JsonScanner(headerBytes, MAX_HEADER_DEPTH);
  try {
    s.object(1, (key) => {
      if (key === '__metadata__') metadata = readMetadata(s, fail);
      else if (entries.length === MAX_TENSORS) fail(`header lists more than ${MAX_TENSORS} tensors`);
      else entries.push(readEntry(s, key, fail));
    }, MAX_NAME_BYTES);
    s.end();
  } catch (e) {
    if (!(e instanceof JsonScanError)) throw e;
    fail(e.kind === 'syntax' ? `header is not valid UTF-8 JSON: ${e.message}` : `header rejected: ${e.message}`);
  }
  const tensors = new Map<string, TensorInfo>();
  for (const t of validate(entries, fileSize - 8 - headerBytes.length, fail)) {
    tensors.set(t.name, { ...t, begin: t.begin + 8 + headerBytes.length, end: t.end + 8 + headerBytes.length });
  }
  return { tensors, metadata };
}

function readMetadata(s: JsonScanner, fail: (p: string) => never): Record<string, string> {
  if (s.peek() !== 0x7b) fail(`__metadata__ is not an object (found ${s.describeNext()})`);
  const m: Record<string, string> = {};
  let n = 0;
  s.object(2, (k) => {
    if (++n > MAX_METADATA_ENTRIES) fail(`__metadata__ has more than ${MAX_METADATA_ENTRIES} entries`);
    if (s.peek() !== 0x22) fail(`__metadata__ ${quoted(k)} is not a string (found ${s.describeNext()})`);
    Object.defineProperty(m, k, { value: s.string(), enumerable: true, writable: true, configurable: true });
  }, MAX_NAME_BYTES);
  return m;
}

/** Reads one tensor's entry: `dtype`, `shape`, `data_offsets`; other fields are skipped, as the crate does. */
function readEntry(s: JsonScanner, name: string, fail: (p: string) => never): Entry {
  const t = `tensor ${quoted(name)}`;
  if (s.peek() !== 0x7b) fail(`${t}: entry is not an object (found ${s.describeNext()})`);
  const e: Entry = { name };
  const integers = (field: string, max: number): number[] => {
    const what = field === 'shape' ? 'a list of non-negative integers' : 'two non-negative integers';
    if (s.peek() !== 0x5b) fail(`${t}: ${field} is not ${what} (found ${s.describeNext()})`);
    const out: number[] = [];
    s.array(3, (i) => {
      if (i === max) fail(field === 'shape' ? `${t}: shape has more than ${MAX_RANK} dimensions` : `${t}: data_offsets is not two non-negative integers (it has more)`);
      const v = s.integerToken();
      if (v === undefined) fail(`${t}: ${field} is not ${what} (found ${s.describeNext()})`);
      if (v!.value === undefined) fail(`${t}: ${field} is not ${what} below 2^53 (found ${v!.text})`);
      out.push(v!.value!);
    });
    return out;
  };
  s.object(2, (k) => {
    if (k === 'dtype') {
      if (s.peek() !== 0x22) fail(`${t}: dtype is not a string (found ${s.describeNext()})`);
      e.dtype = s.string();
    } else if (k === 'shape') {
      e.shape = integers('shape', MAX_RANK);
    } else if (k === 'data_offsets') {
      e.offsets = integers('data_offsets', 2);
    } else {
      s.skip(3);
    }
  });
  return e;
}

type Located = { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number };

/** The crate's `Metadata::validate` plus its end-of-buffer check: exact, gap-free coverage of the data. */
function validate(entries: Entry[], dataBytes: number, fail: (p: string) => never): Located[] {
  const located = entries.map((e): Located => {
    const t = `tensor ${quoted(e.name)}`;
    if (e.dtype === undefined) fail(`${t}: missing "dtype"`);
    if (!Object.hasOwn(DTYPE_BYTES, e.dtype!)) {
      fail(`${t}: unknown dtype ${quoted(e.dtype!)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!e.shape) fail(`${t}: missing "shape"`);
    if (!e.offsets) fail(`${t}: missing "data_offsets"`);
    if (e.offsets!.length !== 2) fail(`${t}: data_offsets is not two non-negative integers`);
    const [begin, end] = e.offsets!;
    if (end < begin) fail(`${t}: data_offsets [${begin}, ${end}] end before they begin`);
    return { name: e.name, dtype: e.dtype as SafetensorsDtype, shape: e.shape!, begin, end };
  });
  const sorted = [...located].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: Located | undefined;
  for (const x of sorted) {
    const t = `tensor ${quoted(x.name)}`;
    if (x.begin < at) fail(`tensors ${quoted(prev!.name)} and ${quoted(x.name)} overlap (bytes ${x.begin}..${Math.min(at, x.end)} of the data section)`);
    if (x.begin > at) fail(`gap of ${x.begin - at} bytes before tensor ${quoted(x.name)} (data section bytes ${at}..${x.begin} belong to no tensor)`);
    const need = byteSize(x.shape, DTYPE_BYTES[x.dtype]);
    if (need === undefined) fail(`${t}: shape [${x.shape}] × ${x.dtype} overflows 64 bits`);
    if (need !== x.end - x.begin) fail(`${t}: shape [${x.shape}] × ${x.dtype} needs ${need} bytes but data_offsets span ${x.end - x.begin}`);
    at = x.end;
    prev = x;
  }
  if (at > dataBytes) fail(`the tensors end at byte ${at} of the data section, which has ${dataBytes} bytes: the file is truncated`);
  if (at < dataBytes) fail(`${dataBytes - at} trailing bytes after the last tensor (the data section has ${dataBytes} bytes, the tensors end at ${at}): a wrong header length or a damaged file`);
  return located;
}

const U64_MAX = 2 ** 64;

/**
 * Bytes of a tensor, or undefined when the product overflows u64 along the way (as the crate's
 * `checked_mul` fold does, even if a later dimension is 0). Exact below 2^53, which bounds every file.
 */
function byteSize(shape: number[], elemBytes: number): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n >= U64_MAX) return undefined;
  }
  n *= elemBytes;
  return n >= U64_MAX ? undefined : n;
}
