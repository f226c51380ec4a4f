/**
 * The safetensors reader on corrupt input: every problem is a SafetensorsError that names the file and
 * says what is wrong, found before anything large is allocated. Also the writer/reader round trip and
 * F16/BF16 decoding.
 */
import * as tf from '@tensorflow/tfjs-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsError, SafetensorsFile, encodeSafetensors } from '../src/io/safetensors.js';
import { openSafetensors } from '../src/io/node-source.js';

const NAME = 'corrupt-test.safetensors';

/** Builds a file from a header object (or raw header text) and a data section. */
function build(header: unknown, data: Uint8Array | number, raw = false): Uint8Array {
  const text = raw ? (header as string) : JSON.stringify(header);
  const hb = new TextEncoder().encode(text);
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + hb.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(d, 8 + hb.length);
  return out;
}

/** Opens bytes and reads every tensor's values (the full path a loader takes). */
async function openAndRead(bytes: Uint8Array, name = NAME): Promise<void> {
  const f = await SafetensorsFile.fromBytes(bytes, name);
  for (const k of f.keys()) await f.readValues(k);
}

async function expectError(bytes: Uint8Array, problem: RegExp): Promise<SafetensorsError> {
  let err: unknown;
  try {
    await openAndRead(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SafetensorsError);
  const msg = (err as Error).message;
  expect(msg).toMatch(new RegExp(NAME.replace('.', '\\.')));
  expect(msg).toMatch(problem);
  return err as SafetensorsError;
}

const good = (): Uint8Array => encodeSafetensors({
  a: { values: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3] },
  b: { values: Int32Array.from([7, -8]), shape: [2] },
}, { format: 'pt' });

describe('truncated files', () => {
  const full = good();
  const n = Number(new DataView(full.buffer).getBigUint64(0, true));
  test.each([0, 1, 4, 7])('cut inside the 8-byte length (%i bytes)', async (cut) => {
    await expectError(full.subarray(0, cut), /truncated.*8-byte header length/);
  });
  test.each([8, 9, 8 + Math.floor(n / 2), 8 + n - 1])('cut inside the header (%i bytes)', async (cut) => {
    await expectError(full.subarray(0, cut), /header length \d+ runs past the end of the file/);
  });
  test.each([8 + n, 8 + n + 1, 8 + n + 10, full.length - 1])('cut inside the data (%i bytes)', async (cut) => {
    await expectError(full.subarray(0, cut), /the tensors end at byte \d+ of the data section, which has \d+ bytes: the file is truncated/);
  });

  test('a truncated file on disk, through openSafetensors, names the path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-bad-'));
    try {
      for (const cut of [3, 8 + Math.floor(n / 2), full.length - 5]) {
        const p = path.join(dir, `cut${cut}.safetensors`);
        fs.writeFileSync(p, full.subarray(0, cut));
        const err = await openSafetensors(p).then(async (f) => {
          try { for (const k of f.keys()) await f.readValues(k); } finally { await f.close(); }
        }).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(SafetensorsError);
        expect((err as Error).message).toContain(p);
        expect((err as Error).message).toMatch(/truncated/);
      }
      // The intact file reads back.
      const p = path.join(dir, 'ok.safetensors');
      fs.writeFileSync(p, full);
      const f = await openSafetensors(p);
      expect(Array.from((await f.readValues('a')).values)).toEqual([1, 2, 3, 4, 5, 6]);
      // A file that shrinks after its header was validated still fails with a named error.
      fs.truncateSync(p, full.length - 4);
      const keys = f.keys();
      const errs = await Promise.all(keys.map((k) => f.readValues(k).then(() => null, (e: unknown) => e)));
      const err = errs.find((e) => e !== null);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toContain(p);
      expect((err as Error).message).toMatch(/truncated: unexpected end of file/);
      await f.close();
      await expect(openSafetensors(path.join(dir, 'missing.safetensors'))).rejects.toThrow(/missing\.safetensors/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bad headers', () => {
  const t = (dtype: string, shape: number[], off: number[]) => ({ dtype, shape, data_offsets: off });

  test('header length larger than the file', async () => {
    const b = good();
    new DataView(b.buffer).setBigUint64(0, BigInt(b.length), true);
    await expectError(b, /header length \d+ runs past the end of the file \(\d+ bytes\)/);
  });

  test('header length of 2^40 is rejected before any allocation', async () => {
    const b = good();
    new DataView(b.buffer).setBigUint64(0, 2n ** 40n, true);
    await expectError(b, /header length 1099511627776 is larger than the \d+-byte limit/);
  });

  test('header length of 2^64-1', async () => {
    const b = good();
    new DataView(b.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
    await expectError(b, /header length \d+ is larger than/);
  });

  test('header that is not JSON', async () => {
    await expectError(build('{"a": {"dtype": "F32", ', 0, true), /header is not valid UTF-8 JSON/);
    await expectError(build('hello', 0, true), /header is not a JSON object \(it must start with "\{"/);
  });

  test('header that is not UTF-8', async () => {
    const b = build('{"a":1}', 0, true);
    b[9] = 0xff;
    await expectError(b, /header is not valid UTF-8 JSON/);
  });

  test.each([['array', '[1,2]'], ['number', '42'], ['string', '"x"'], ['null', 'null']])('header that is a JSON %s, not an object', async (_k, text) => {
    await expectError(build(text, 0, true), /header is not a JSON object/);
  });

  test('entry that is not an object / __metadata__ that is not an object', async () => {
    await expectError(build({ a: 5 }, 0), /tensor "a": entry is not an object/);
    await expectError(build({ a: null }, 0), /tensor "a": entry is not an object/);
    await expectError(build({ __metadata__: [1] }, 0), /__metadata__ is not an object/);
  });

  test('offsets outside the data section', async () => {
    await expectError(build({ a: t('F32', [3], [0, 12]) }, 8), /the tensors end at byte 12 of the data section, which has 8 bytes: the file is truncated/);
    await expectError(build({ a: t('F32', [2], [0, 12]) }, 8), /tensor "a": shape \[2\] × F32 needs 8 bytes but data_offsets span 12/);
    await expectError(build({ a: t('F32', [1], [8, 12]) }, 8), /gap of 8 bytes before tensor "a"/);
  });

  test('negative, fractional, missing or non-numeric offsets', async () => {
    for (const off of [[-4, 0], [0.5, 4.5], [0], [0, 4, 8], 'x', null, ['0', '4']]) {
      await expectError(build({ a: { dtype: 'F32', shape: [1], data_offsets: off } }, 8), /tensor "a": data_offsets is not two non-negative integers/);
    }
  });

  test('offsets not ordered (end before begin)', async () => {
    await expectError(build({ a: t('F32', [1], [8, 4]) }, 12), /tensor "a": data_offsets \[8, 4\] end before they begin/);
  });

  test('overlapping tensors', async () => {
    await expectError(build({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [4, 12]) }, 12), /tensors "a" and "b" overlap/);
    await expectError(build({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [0, 8]) }, 8), /overlap/);
  });

  test('tensors listed out of file order but disjoint are fine', async () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
    const f = await SafetensorsFile.fromBytes(build({ b: t('F32', [1], [8, 12]), a: t('F32', [2], [0, 8]) }, data), NAME);
    expect(Array.from((await f.readValues('a')).values)).toEqual([1, 2]);
    expect(Array.from((await f.readValues('b')).values)).toEqual([3]);
  });

  test('zero-size tensors may share an offset with their neighbour', async () => {
    const data = new Uint8Array(new Float32Array([1, 2]).buffer);
    const f = await SafetensorsFile.fromBytes(build({ a: t('F32', [2], [0, 8]), e: t('F32', [0, 3], [0, 0]), z: t('F32', [0], [8, 8]) }, data), NAME);
    expect((await f.readValues('e')).values.length).toBe(0);
    expect(Array.from((await f.readValues('a')).values)).toEqual([1, 2]);
  });

  test('offsets not matching shape × dtype', async () => {
    await expectError(build({ a: t('F32', [3], [0, 8]) }, 12), /tensor "a": shape \[3\] × F32 needs 12 bytes but data_offsets span 8/);
    await expectError(build({ a: t('F16', [2, 2], [0, 16]) }, 16), /shape \[2,2\] × F16 needs 8 bytes but data_offsets span 16/);
  });

  test('bad shapes', async () => {
    for (const shape of [[-1], [1.5], ['2'], 3, null, [1e300]]) {
      await expectError(build({ a: { dtype: 'F32', shape, data_offsets: [0, 4] } }, 4), /tensor "a": shape is not a list of non-negative integers/);
    }
  });

  test('unknown dtype', async () => {
    await expectError(build({ a: t('F8_E4M3', [1], [0, 1]) }, 1), /tensor "a": unknown dtype "F8_E4M3" \(supported: .*F32/);
    await expectError(build({ a: { shape: [1], data_offsets: [0, 1] } }, 1), /tensor "a": missing "dtype"/);
    await expectError(build({ a: t('toString', [1], [0, 1]) }, 1), /unknown dtype "toString"/);
  });

  test('a header claiming gigabytes of tensor data', async () => {
    await expectError(build({ a: t('F32', [1e6, 1e6], [0, 4e12]) }, 16), /the tensors end at byte 4000000000000 of the data section, which has 16 bytes/);
    await expectError(build({ a: t('F32', [1e6, 1e6], [0, 16]) }, 16), /shape \[1000000,1000000\] × F32 needs 4000000000000 bytes but data_offsets span 16/);
    // A product that is not a safe integer must not pass the size check by rounding.
    await expectError(build({ a: t('U8', [2 ** 30, 2 ** 30, 2 ** 30], [0, 16]) }, 16), /shape \[1073741824,1073741824,1073741824\] × U8 overflows 64 bits/);
    await expectError(build({ a: t('U8', [2 ** 26, 2 ** 26, 2 ** 2], [0, 16]) }, 16), /needs 18014398509481984 bytes but data_offsets span 16/);
  });

  test('I64 values outside int32 are an error, not a wrap', async () => {
    const b = encodeSafetensors({ a: { values: Int32Array.from([1]), shape: [1], dtype: 'I64' } });
    // Set the high word of the single value.
    b[b.length - 1] = 0x01;
    await expectError(b, /tensor "a": I64 value \d+ does not fit in int32/);
  });

  test('asking for a tensor that is not there', async () => {
    const f = await SafetensorsFile.fromBytes(good(), NAME);
    await expect(f.readValues('nope')).rejects.toThrow(/corrupt-test\.safetensors: no tensor named "nope"/);
  });
});

describe('round trip encodeSafetensors → SafetensorsFile.fromBytes', () => {
  test('F32, I32, I64, BOOL values, shapes and metadata survive', async () => {
    const f32 = Float32Array.from([0, -1.5, 3.25, 1e-30, -7e20, Math.fround(Math.PI)]);
    const i32 = Int32Array.from([0, -1, 2147483647, -2147483648]);
    const i64 = Int32Array.from([5, -6, 2147483647, -2147483648, 0, 1]);
    const bools = tf.tensor1d([true, false, true], 'bool');
    const bytes = encodeSafetensors({
      f: { values: f32, shape: [2, 3] },
      i: { values: i32, shape: [4] },
      l: { values: i64, shape: [3, 2], dtype: 'I64' },
      b: bools,
      tf32: tf.tensor2d([[1, 2], [3, 4]]),
      scalar: { values: Float32Array.from([9]), shape: [] },
      empty: { values: new Float32Array(0), shape: [0, 4] },
    }, { format: 'pt', note: 'x' });
    expect(new DataView(bytes.buffer).getBigUint64(0, true) % 8n).toBe(0n);
    const f = await SafetensorsFile.fromBytes(bytes);
    expect(f.metadata).toEqual({ format: 'pt', note: 'x' });
    expect(new Set(f.keys())).toEqual(new Set(['f', 'i', 'l', 'b', 'tf32', 'scalar', 'empty']));
    const r = async (k: string) => f.readValues(k);
    expect(f.info('f').dtype).toBe('F32');
    expect(f.info('i').dtype).toBe('I32');
    expect(f.info('l').dtype).toBe('I64');
    expect(f.info('b').dtype).toBe('BOOL');
    const rf = await r('f');
    expect(rf.dtype).toBe('float32');
    expect(rf.shape).toEqual([2, 3]);
    expect(Array.from(rf.values)).toEqual(Array.from(f32));
    expect(Array.from((await r('i')).values)).toEqual(Array.from(i32));
    const rl = await r('l');
    expect(rl.dtype).toBe('int32');
    expect(rl.shape).toEqual([3, 2]);
    expect(Array.from(rl.values)).toEqual(Array.from(i64));
    const rb = await r('b');
    expect(rb.dtype).toBe('bool');
    expect(Array.from(rb.values)).toEqual([1, 0, 1]);
    expect(Array.from((await r('tf32')).values)).toEqual([1, 2, 3, 4]);
    expect((await r('scalar')).shape).toEqual([]);
    expect(Array.from((await r('scalar')).values)).toEqual([9]);
    expect((await r('empty')).shape).toEqual([0, 4]);
    const t = await f.tensor('b');
    expect(t.dtype).toBe('bool');
    expect(Array.from(t.dataSync())).toEqual([1, 0, 1]);
    t.dispose();
    bools.dispose();
  });

  test('the int64 option writes int32 tensors as I64', async () => {
    const x = tf.tensor1d([3, -4], 'int32');
    const f = await SafetensorsFile.fromBytes(encodeSafetensors({ x }, undefined, { int64: true }));
    expect(f.info('x').dtype).toBe('I64');
    expect(Array.from((await f.readValues('x')).values)).toEqual([3, -4]);
    x.dispose();
  });
});

describe('F16 / BF16 / F64 / small-int decoding', () => {
  const fileOf = (dtype: string, raw: ArrayBufferView, n: number): Uint8Array =>
    build({ x: { dtype, shape: [n], data_offsets: [0, raw.byteLength] } }, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));

  test('F16 known values', async () => {
    const cases: [number, number][] = [
      [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0000, 0], [0x3555, 0.333251953125],
      [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x0400, 2 ** -14], [0x8001, -(2 ** -24)],
      [0x7c00, Infinity], [0xfc00, -Infinity], [0x3800, 0.5], [0xfbff, -65504],
    ];
    const f = await SafetensorsFile.fromBytes(fileOf('F16', Uint16Array.from(cases.map((c) => c[0])), cases.length));
    const { values, dtype } = await f.readValues('x');
    expect(dtype).toBe('float32');
    expect(Array.from(values)).toEqual(cases.map((c) => c[1]));
    const nan = await SafetensorsFile.fromBytes(fileOf('F16', Uint16Array.from([0x7e00, 0x8000]), 2));
    const nv = (await nan.readValues('x')).values;
    expect(Number.isNaN(nv[0])).toBe(true);
    expect(Object.is(nv[1], -0)).toBe(true);
  });

  test('BF16 known values', async () => {
    const cases: [number, number][] = [
      [0x3f80, 1], [0xc000, -2], [0x0000, 0], [0x4049, 3.140625], [0x7f7f, 3.3895313892515355e38],
      [0x0001, 2 ** -133], [0x0080, 2 ** -126], [0xff80, -Infinity], [0x3e80, 0.25],
    ];
    const f = await SafetensorsFile.fromBytes(fileOf('BF16', Uint16Array.from(cases.map((c) => c[0])), cases.length));
    expect(Array.from((await f.readValues('x')).values)).toEqual(cases.map((c) => c[1]));
  });

  test('F16 data at an odd offset inside the file is still decoded (copied, not viewed unaligned)', async () => {
    const data = new Uint8Array([0xaa, 0x00, 0x3c, 0x00, 0xc0]);
    const f = await SafetensorsFile.fromBytes(build({ p: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, x: { dtype: 'F16', shape: [2], data_offsets: [1, 5] } }, data));
    expect(Array.from((await f.readValues('x')).values)).toEqual([1, -2]);
    expect(Array.from((await f.readValues('p')).values)).toEqual([0xaa]);
  });

  test('F64, I16, I8, U8', async () => {
    const f64 = await SafetensorsFile.fromBytes(fileOf('F64', Float64Array.from([0.1, -2.5]), 2));
    expect(Array.from((await f64.readValues('x')).values)).toEqual([Math.fround(0.1), -2.5]);
    const i16 = await SafetensorsFile.fromBytes(fileOf('I16', Int16Array.from([-32768, 7]), 2));
    expect(Array.from((await i16.readValues('x')).values)).toEqual([-32768, 7]);
    const i8 = await SafetensorsFile.fromBytes(fileOf('I8', Int8Array.from([-128, 127]), 2));
    expect(Array.from((await i8.readValues('x')).values)).toEqual([-128, 127]);
    const u8 = await SafetensorsFile.fromBytes(fileOf('U8', Uint8Array.from([255, 0]), 2));
    expect(Array.from((await u8.readValues('x')).values)).toEqual([255, 0]);
  });
});

describe('sharded checkpoints', () => {
  test('an index whose weight_map is not an object of file names is an error naming the index', async () => {
    const { openComponentWeights } = await import('../src/io/diffusers-folder.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-index-'));
    try {
      const index = path.join(dir, 'diffusion_pytorch_model.safetensors.index.json');
      for (const map of [[1, 2], { a: 5 }, { a: '' }, null, 'x']) {
        fs.writeFileSync(index, JSON.stringify({ weight_map: map }));
        await expect(openComponentWeights(dir)).rejects.toThrow(`${index}: weight_map must be an object of tensor name → file name`);
      }
      fs.writeFileSync(index, JSON.stringify({ metadata: {} }));
      await expect(openComponentWeights(dir)).rejects.toThrow(/index\.json: weight_map must be/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
