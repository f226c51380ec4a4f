/**
 * The reference reader's rules (the Rust `safetensors` crate: `read_metadata` and `Metadata::validate`), and
 * the bounds on the header's complexity. Each case here was accepted (often with shifted, wrong values) or
 * took minutes and gigabytes before the header was read with a bounded, schema-directed parser.
 */
import { SafetensorsError, SafetensorsFile, encodeSafetensors } from '../src/io/safetensors.js';

const NAME = 'rules-test.safetensors';

/** A file from raw header text (padded with `pad` spaces) and a data section. */
function build(headerText: string, data: Uint8Array | number, pad = 0, lengthDelta = 0): Uint8Array {
  const hb = new TextEncoder().encode(headerText + ' '.repeat(pad));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + hb.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length + lengthDelta), true);
  out.set(hb, 8);
  out.set(d, 8 + hb.length);
  return out;
}

const entry = (dtype: string, shape: number[], off: [number, number]): string =>
  `{"dtype":"${dtype}","shape":[${shape}],"data_offsets":[${off}]}`;

/** Opens `bytes` and reads every tensor; the error, or null when it loaded. */
async function outcome(bytes: Uint8Array, name = NAME): Promise<Error | null> {
  try {
    const f = await SafetensorsFile.fromBytes(bytes, name);
    for (const k of f.keys()) await f.readValues(k);
    return null;
  } catch (e) {
    return e as Error;
  }
}

async function expectError(bytes: Uint8Array, problem: RegExp): Promise<Error> {
  const err = await outcome(bytes);
  expect(err).toBeInstanceOf(SafetensorsError);
  expect(err!.message.startsWith(`${NAME}: `)).toBe(true);
  expect(err!.message).toMatch(problem);
  // Never an unbounded echo of the offending value.
  expect(err!.message.length).toBeLessThan(600);
  return err!;
}

const f32 = (...v: number[]): Uint8Array => new Uint8Array(Float32Array.from(v).buffer);

describe('the data section is covered exactly (MetadataIncompleteBuffer / InvalidOffset)', () => {
  const header = `{"a":${entry('F32', [2], [0, 8])},"b":${entry('F32', [1], [8, 12])}}`;

  test('the control loads', async () => {
    expect(await outcome(build(header, f32(1, 2, 3), 6))).toBeNull();
  });

  test.each([1, 2, 3, 4, 5, 6])('a header length cut by %i byte(s) into the padding is an error, not shifted data', async (cut) => {
    await expectError(build(header, f32(1, 2, 3), 6, -cut), new RegExp(`${cut} trailing bytes`));
  });

  test.each([1, 4, 7])('%i trailing byte(s) after the last tensor', async (extra) => {
    await expectError(build(header, new Uint8Array([...f32(1, 2, 3), ...new Uint8Array(extra)])), new RegExp(`${extra} trailing bytes`));
  });

  test('a gap between two tensors', async () => {
    await expectError(build(`{"a":${entry('F32', [2], [0, 8])},"b":${entry('F32', [1], [12, 16])}}`, 16), /gap of 4 bytes before tensor "b"/);
  });

  test('a first tensor that does not start at 0', async () => {
    await expectError(build(`{"a":${entry('F32', [1], [4, 8])}}`, 8), /gap of 4 bytes before tensor "a"/);
  });

  test('a partial overlap', async () => {
    await expectError(build(`{"a":${entry('F32', [2], [0, 8])},"b":${entry('F32', [2], [4, 12])}}`, 12), /tensors "a" and "b" overlap/);
  });

  test('zero-size tensors may share offsets (the crate sorts by (begin, end))', async () => {
    const h = `{"z1":${entry('F32', [0], [0, 0])},"a":${entry('F32', [1], [0, 4])},"z2":${entry('F32', [0, 7], [4, 4])},"z3":${entry('F32', [0], [4, 4])}}`;
    expect(await outcome(build(h, f32(5)))).toBeNull();
  });

  test('an empty header with no data is a valid empty file; with data it is not', async () => {
    expect(await outcome(build('{}', 0))).toBeNull();
    await expectError(build('{}', 4), /4 trailing bytes/);
  });

  test('integers must be integers: 1.0 and 1e0 are not (serde rejects a float for usize)', async () => {
    await expectError(build(`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, 4), /tensor "a": shape/);
    await expectError(build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}`, 4), /tensor "a": data_offsets/);
  });

  test('a product of dimensions past 2^64 is an overflow, even with a later 0', async () => {
    await expectError(build(`{"a":${entry('F32', [2 ** 40, 2 ** 40, 0], [0, 0])}}`, 0), /tensor "a": .*overflow/);
  });
});

describe('header syntax and types', () => {
  test('duplicate tensor names are an error (JSON.parse would keep the last one)', async () => {
    const h = `{"a":${entry('F32', [1], [0, 4])},"b":${entry('F32', [1], [4, 8])},"a":${entry('F32', [1], [4, 8])}}`;
    await expectError(build(h, 8), /duplicate key "a"/);
  });

  test('a duplicate field inside an entry is an error', async () => {
    await expectError(build(`{"a":{"dtype":"F32","shape":[1],"dtype":"F16","data_offsets":[0,4]}}`, 4), /duplicate key "dtype"/);
  });

  test.each([
    ['an array', '[]'], ['a number', '5'], ['a string', '"x"'], ['null', 'null'],
  ])('__metadata__ that is %s', async (_k, v) => {
    await expectError(build(`{"__metadata__":${v}}`, 0), /__metadata__ is not an object/);
  });

  test.each([
    ['a number', '{"format":1}'], ['null', '{"format":null}'], ['an object', '{"format":{}}'], ['a list', '{"format":["pt"]}'],
  ])('a __metadata__ value that is %s', async (_k, v) => {
    await expectError(build(`{"__metadata__":${v}}`, 0), /__metadata__ "format" is not a string/);
  });

  test('the header must start with "{" (the format says MUST)', async () => {
    await expectError(build(` {"a":${entry('F32', [1], [0, 4])}}`, 4), /header is not a JSON object \(it must start with "\{"/);
  });

  test('padding must be JSON whitespace: NUL bytes are not', async () => {
    const b = build(`{"a":${entry('F32', [1], [0, 4])}}`, 4, 3);
    b[8 + b.length - 8 - 4 - 1] = 0;
    await expectError(b, /header is not valid UTF-8 JSON: unexpected byte 0x00 after the JSON value/);
  });

  test('invalid UTF-8 inside a name (overlong, lone continuation, surrogate, truncated)', async () => {
    for (const bad of [[0xc0, 0x80], [0x80], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x98]]) {
      const head = new TextEncoder().encode('{"');
      const tail = new TextEncoder().encode(`":${entry('F32', [1], [0, 4])}}`);
      const hb = new Uint8Array([...head, ...bad, ...tail]);
      const b = new Uint8Array(8 + hb.length + 4);
      new DataView(b.buffer).setBigUint64(0, BigInt(hb.length), true);
      b.set(hb, 8);
      await expectError(b, /header is not valid UTF-8/);
    }
  });

  test('an escaped lone surrogate in a name', async () => {
    await expectError(build(`{"a\\ud800":${entry('F32', [1], [0, 4])}}`, 4), /header is not valid UTF-8 JSON: .*surrogate/);
  });

  test('escapes in names decode as JSON says', async () => {
    const f = await SafetensorsFile.fromBytes(build(`{"a\\u00e9\\n\\"\\ud83d\\ude00":${entry('F32', [1], [0, 4])}}`, f32(2)), NAME);
    expect(f.keys()).toEqual(['a\u00e9\n"\u{1f600}']);
  });

  test('unknown fields in an entry are ignored, as the crate does', async () => {
    const f = await SafetensorsFile.fromBytes(build(`{"a":{"dtype":"F32","extra":{"x":[1,{"y":null}]},"shape":[1],"data_offsets":[0,4]}}`, f32(3)), NAME);
    expect(Array.from((await f.readValues('a')).values)).toEqual([3]);
  });
});

describe('bounds on the header (fail fast, small memory, short messages)', () => {
  test('a 100 MB header of nested "[" fails within a second (was: minutes and gigabytes)', async () => {
    const n = 100_000_000 - 16;
    const b = new Uint8Array(8 + n);
    b.fill(0x5b, 8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
    b.set(new TextEncoder().encode('{"a":{"x":'), 8);
    const t0 = performance.now();
    const err = await outcome(b);
    const ms = performance.now() - t0;
    console.log(`100 MB nested header: rejected in ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(1000);
    expect(err?.message).toMatch(/header rejected: nested deeper than 64 levels/);
  });

  test('a name longer than the limit, and its message stays short', async () => {
    const err = await expectError(build(`{"${'n'.repeat(1_000_000)}":${entry('F32', [1], [0, 4])}}`, 4), /name of 1000000 bytes is longer than the \d+-byte limit/);
    expect(err.message.length).toBeLessThan(300);
  });

  test('a huge dtype string is not echoed whole', async () => {
    const err = await expectError(build(`{"a":{"dtype":"${'X'.repeat(1_000_000)}","shape":[1],"data_offsets":[0,4]}}`, 4), /tensor "a": unknown dtype "XXX/);
    expect(err.message.length).toBeLessThan(400);
  });

  test('a shape of rank above the limit', async () => {
    await expectError(build(`{"a":${entry('F32', new Array(100).fill(1), [0, 4])}}`, 4), /tensor "a": shape has more than \d+ dimensions/);
  });

  test('a dimension that is not a safe integer', async () => {
    await expectError(build(`{"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,4]}}`, 4), /tensor "a": shape/);
  });

  test('more tensors than the limit', async () => {
    const parts: string[] = [];
    for (let i = 0; i < 200_001; i++) parts.push(`"t${i}":${entry('U8', [0], [0, 0])}`);
    await expectError(build(`{${parts.join(',')}}`, 0), /more than 200000 tensors/);
  });

  test('the header size limit is the crate\'s 100,000,000 bytes', async () => {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigUint64(0, 100_000_001n, true);
    await expectError(b, /header length 100000001 is larger than the 100000000-byte limit/);
  });
});

describe('files written by encodeSafetensors still load', () => {
  test('round trip with metadata and several dtypes', async () => {
    const bytes = encodeSafetensors({
      w: { values: Float32Array.from([1, 2, 3]), shape: [3] },
      i: { values: Int32Array.from([4]), shape: [1], dtype: 'I64' },
      e: { values: new Float32Array(0), shape: [0, 2] },
    }, { format: 'pt' });
    const f = await SafetensorsFile.fromBytes(bytes, NAME);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(Array.from((await f.readValues('w')).values)).toEqual([1, 2, 3]);
    expect(Array.from((await f.readValues('i')).values)).toEqual([4]);
  });
});
