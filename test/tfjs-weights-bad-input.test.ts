/**
 * The TF.js weights reader on corrupt folders: the manifest's weights must cover the shards' bytes exactly,
 * shards must have the sizes model.json declares, and a local folder and the same folder over fetch give the
 * same verdict (each error naming the file or URL).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TfjsWeightSource } from '../src/io/tfjs-format.js';
import { buildFolder, controlWeights, loadError, memoryFetch, modelJsonOf, withModelJson, writeFolder, type Folder } from './support/tfjs-folder.js';

const BASE = 'https://weights.test/unet/';
let work: string;
let control: Folder;
let n = 0;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-bad-'));
  control = await buildFolder(controlWeights());
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Opens and reads every weight, locally and over fetch; both outcomes (null when it loaded). */
async function both(files: Folder): Promise<{ local: Error | null; remote: Error | null; dir: string }> {
  const dir = path.join(work, `f${n++}`);
  writeFolder(dir, files);
  return {
    local: await loadError(() => TfjsWeightSource.open(dir)),
    remote: await loadError(() => TfjsWeightSource.open(BASE, { fetch: memoryFetch(BASE, files) })),
    dir,
  };
}

/** Both ways must fail with `problem`, locally naming a file in `dir`, remotely a URL under BASE. */
async function expectBothFail(files: Folder, problem: RegExp): Promise<void> {
  const { local, remote, dir } = await both(files);
  expect(local?.message).toMatch(problem);
  expect(remote?.message).toMatch(problem);
  expect(local!.message).toContain(dir);
  expect(remote!.message).toContain(BASE);
  expect(local!.message.length).toBeLessThan(600);
  expect(remote!.message.length).toBeLessThan(600);
}

const shardNames = (f: Folder): string[] => modelJsonOf(f).weightsManifest[0].paths;

function changeShard(f: Folder, i: number, change: (b: Uint8Array) => Uint8Array): Folder {
  const out = new Map(f);
  const name = shardNames(f)[i];
  out.set(name, change(f.get(name)!));
  return out;
}

test('the control folder loads both ways, with the same values', async () => {
  const { local, remote } = await both(control);
  expect(local).toBeNull();
  expect(remote).toBeNull();
  expect(shardNames(control).length).toBeGreaterThan(3);
});

describe('shard sizes', () => {
  test('a shard 4 bytes longer than model.json says (was: loads from disk, error over HTTP)', async () => {
    await expectBothFail(changeShard(control, 1, (b) => new Uint8Array([...b, 1, 2, 3, 4])), /group1-shard2of\d+\.bin has (20|more than 16) bytes but model\.json's shardSizes says 16/);
  });

  test('a truncated shard', async () => {
    await expectBothFail(changeShard(control, 2, (b) => b.subarray(0, 10)), /group1-shard3of\d+\.bin has 10 bytes but model\.json's shardSizes says 16/);
  });

  test('wrong shardSizes with the right total (was: "truncated" locally)', async () => {
    const j = modelJsonOf(control);
    const s = j.userDefinedMetadata!.tgate!.shardSizes;
    s[0] += 4;
    s[1] -= 4;
    await expectBothFail(withModelJson(control, j), /group1-shard1of\d+\.bin has 16 bytes but model\.json's shardSizes says 20/);
  });

  test('shardSizes that do not add up to the weights', async () => {
    const j = modelJsonOf(control);
    j.userDefinedMetadata!.tgate!.shardSizes[0] += 4;
    await expectBothFail(withModelJson(control, j), /model\.json: shardSizes add up to \d+ bytes but the weights of group 0 need \d+/);
  });

  test('shardSizes with the wrong count or type', async () => {
    for (const bad of [[16], 'x', [16, 16, 16, 16, 16, -1], [1.5]]) {
      const j = modelJsonOf(control);
      (j.userDefinedMetadata!.tgate as { shardSizes: unknown }).shardSizes = bad;
      await expectBothFail(withModelJson(control, j), /model\.json: .*shardSizes/);
    }
  });

  test('without shardSizes, shards holding 4 more bytes than the weights need', async () => {
    const j = modelJsonOf(control);
    delete (j.userDefinedMetadata!.tgate as { shardSizes?: unknown }).shardSizes;
    await expectBothFail(changeShard(withModelJson(control, j), 1, (b) => new Uint8Array([...b, 1, 2, 3, 4])),
      /model\.json: the shards of group 0 hold \d+ bytes but the weights need \d+ \(4 trailing bytes\)/);
  });

  test('without shardSizes, a truncated last shard', async () => {
    const j = modelJsonOf(control);
    delete (j.userDefinedMetadata!.tgate as { shardSizes?: unknown }).shardSizes;
    const last = shardNames(control).length - 1;
    await expectBothFail(changeShard(withModelJson(control, j), last, (b) => b.subarray(0, b.length - 2)), /model\.json: the shards of group 0 hold \d+ bytes but the weights need \d+ \(truncated/);
  });

  test('a missing shard', async () => {
    const f = new Map(control);
    f.delete(shardNames(control)[1]);
    await expectBothFail(f, /group1-shard2of\d+\.bin/);
  });
});

describe('the manifest', () => {
  const edit = (change: (w: Record<string, unknown>[], j: Record<string, unknown>) => void): Folder => {
    const j = modelJsonOf(control) as unknown as Record<string, unknown> & { weightsManifest: { weights: Record<string, unknown>[] }[] };
    change(j.weightsManifest[0].weights, j);
    return withModelJson(control, j);
  };

  test('a weight listed twice', async () => {
    await expectBothFail(edit((w) => { w[4].name = w[0].name; }), /model\.json: weight "conv\.weight" is listed twice/);
  });

  test.each([
    ['a negative dimension', [-3, 5]], ['a fractional dimension', [1.5, 10]], ['a string', ['3', 5]], ['not a list', 15],
    ['a dimension past 2^53', [2 ** 60, 0]], ['rank above the limit', new Array(40).fill(1)],
  ])('a shape with %s', async (_k, shape) => {
    await expectBothFail(edit((w) => { w[0].shape = shape; }), /model\.json: weight "conv\.weight": shape/);
  });

  test('a shape with the wrong element count', async () => {
    await expectBothFail(edit((w) => { w[0].shape = [3, 6]; }), /model\.json: shardSizes add up to 108 bytes but the weights of group 0 need 120/);
  });

  test('dtypes other than float32', async () => {
    for (const dtype of ['int32', 'float16', 'bool', 7, undefined]) {
      await expectBothFail(edit((w) => { w[0].dtype = dtype; }), /model\.json: weight "conv\.weight": dtype .* float32/);
    }
  });

  test.each([
    ['an unknown quantization dtype', { dtype: 'uint16' }],
    ['uint8 without a scale', { dtype: 'uint8', min: 0 }],
    ['uint8 with a string min', { dtype: 'uint8', min: 'x', scale: 1 }],
    ['uint8 with a huge scale', { dtype: 'uint8', min: 0, scale: 1e308 }],
    ['not an object', 'uint8'],
  ])('quantization: %s', async (_k, q) => {
    await expectBothFail(edit((w) => { w[2].quantization = q; }), /model\.json: weight "proj\.weight": quantization/);
  });

  test('float16 stored without its quantization record (sizes then disagree)', async () => {
    await expectBothFail(edit((w) => { delete w[1].quantization; }), /model\.json: shardSizes add up to 108 bytes but the weights of group 0 need 122/);
  });

  test('a name that is not a string, or is very long', async () => {
    await expectBothFail(edit((w) => { w[0].name = 5; }), /model\.json: weight 0 of group 0: name is not a string/);
    await expectBothFail(edit((w) => { w[0].name = 'n'.repeat(100_000); }), /model\.json: weight 0 of group 0: name of 100000 characters is longer than the \d+-character limit/);
  });

  test('paths that are not strings', async () => {
    await expectBothFail(edit((_w, j) => { (j.weightsManifest as { paths: unknown }[])[0].paths = [1, 2]; }), /model\.json: group 0: paths must be a list of file names/);
  });

  test('a model.json nested 1,000,000 deep fails fast', async () => {
    const t0 = performance.now();
    await expectBothFail(withModelJson(control, `{"x":${'['.repeat(1_000_000)}`), /model\.json rejected: nested deeper than 64 levels/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  test('duplicate keys in model.json', async () => {
    const text = new TextDecoder().decode(control.get('model.json')).replace(/^\{/, '{"weightsManifest":[],');
    await expectBothFail(withModelJson(control, text), /model\.json is not valid JSON: duplicate key "weightsManifest"/);
  });
});
