/**
 * Names read from a model's files stay inside its folder or URL: TF.js shard paths, the files of a sharded
 * safetensors index, component names. Each escape is refused before anything outside is opened or fetched.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TfjsWeightSource } from '../src/io/tfjs-format.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { openComponentWeights } from '../src/io/diffusers-folder.js';
import * as location from '../src/io/location.js';
import { buildFolder, controlWeights, loadError, modelJsonOf, withModelJson, writeFolder, type Folder } from './support/tfjs-folder.js';
import { startServer, type TestServer } from './support/http-server.js';

let work: string;
let control: Folder;
const servers: TestServer[] = [];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'contain-'));
  control = await buildFolder(controlWeights());
});
afterEach(async () => { await Promise.all(servers.splice(0).map((s) => s.close())); });
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const shardNames = (f: Folder): string[] => modelJsonOf(f).weightsManifest[0].paths;

/** `f` with its group-0 shard paths replaced by `paths`. */
function withPaths(f: Folder, paths: string[]): Folder {
  const j = modelJsonOf(f);
  j.weightsManifest[0].paths = paths;
  return withModelJson(f, j);
}

const readAll = (loc: string): Promise<Error | null> => loadError(() => TfjsWeightSource.open(loc));

describe('nameProblem / joinLocation', () => {
  test.each([
    ['../x', /"\.\." segment/], ['a/../../x', /"\.\." segment/], ['/etc/passwd', /absolute path/], ['C:/x', /":"/], ['C:x', /":"/],
    ['http://127.0.0.1:1/x', /":"/], ['//evil.example/x', /absolute path/], ['..\\x', /backslash/], ['a\\b', /backslash/],
    ['%2e%2e/x', /percent-encoding/], ['..%2fx', /percent-encoding/], ['x?y', /"\?" or "#"/], ['x#y', /"\?" or "#"/],
    ['a//b', /empty path segment/], ['./x', /"\." segment/], ['. ./x', /segment/], ['a\u0000b', /control character/], ['', /empty/],
    ['x'.repeat(2000), /longer than 1024/],
  ])('%j is refused', (name, problem) => {
    expect(location.nameProblem(name)).toMatch(problem);
    expect(() => location.joinLocation('https://h.example/m', name, 'model.json: shard path')).toThrow(/^model\.json: shard path .* names read from a model's files must stay inside its folder https:\/\/h\.example\/m/);
  });

  test.each(['group1-shard1of2.bin', 'sub/dir/file.bin', 'unet', 'a b.bin', '..a', 'a..b'])('%j is accepted', (name) => {
    expect(location.nameProblem(name)).toBeNull();
    expect(location.joinLocation('/m/', name)).toBe(`/m/${name}`);
    expect(location.joinLocation('https://h.example/m/', name)).toBe(`https://h.example/m/${name}`);
  });
});

describe('TF.js shard paths', () => {
  test('a local "../../secret/…" path is refused, not read (was: read and loaded)', async () => {
    // model/ is two levels below a secret/ folder holding a valid shard.
    const root = path.join(work, 'local-up');
    const model = path.join(root, 'a', 'b', 'model');
    const name = shardNames(control)[0];
    writeFolder(model, withPaths(control, [`../../secret/${name}`, ...shardNames(control).slice(1)]));
    fs.mkdirSync(path.join(root, 'a', 'secret'), { recursive: true });
    fs.writeFileSync(path.join(root, 'a', 'secret', name), control.get(name)!);
    for (const n of shardNames(control).slice(1)) fs.writeFileSync(path.join(model, n), control.get(n)!);
    const e = await readAll(model);
    expect(e?.message).toMatch(/model\.json: group 0: shard path "\.\.\/\.\.\/secret\/group1-shard1of\d+\.bin" has a "\.\." segment/);
  });

  test('a URL on another port is refused before any request to it (was: fetched and used)', async () => {
    const other = await startServer(control);
    servers.push(other);
    const names = shardNames(control);
    const site = await startServer(withPaths(control, [`${other.url}${names[0]}`, ...names.slice(1)]));
    servers.push(site);
    const e = await readAll(site.url);
    expect(e?.message).toMatch(/shard path "http:\/\/127\.0\.0\.1:\d+\/group1-shard1of\d+\.bin" names a scheme, drive or other origin/);
    expect(e?.message).toContain(`${site.url}model.json`);
    expect(other.hits).toEqual([]);
  });

  test('a remote "../secret/…" path is refused before any request (was: fetched and used)', async () => {
    const names = shardNames(control);
    const files: Folder = new Map([...withPaths(control, [`../secret/${names[0]}`, ...names.slice(1)])].map(([k, v]) => [`unet/${k}`, v]));
    files.set(`secret/${names[0]}`, control.get(names[0])!);
    const site = await startServer(files);
    servers.push(site);
    const e = await readAll(`${site.url}unet/`);
    expect(e?.message).toMatch(/has a "\.\." segment/);
    expect(site.hits).toEqual(['GET /unet/model.json']);
  });

  test.each(['/etc/passwd', '..\\..\\x.bin', '%2e%2e/x.bin', 'C:\\x.bin', '//127.0.0.1:1/x.bin'])('%j is refused locally and over HTTP', async (bad) => {
    const dir = path.join(work, `bad-${Buffer.from(bad).toString('hex')}`);
    const f = withPaths(control, [bad, ...shardNames(control).slice(1)]);
    writeFolder(dir, new Map([['model.json', f.get('model.json')!]]));
    expect((await readAll(dir))?.message).toMatch(/shard path .* names read from a model's files must stay inside its folder/);
    const site = await startServer(f);
    servers.push(site);
    expect((await readAll(site.url))?.message).toMatch(/shard path .* names read from a model's files must stay inside its folder/);
    expect(site.hits).toEqual(['GET /model.json']);
  });
});

describe('sharded safetensors index', () => {
  test('a weight_map file outside the component folder is refused, not opened (was: read)', async () => {
    const root = path.join(work, 'sharded');
    const comp = path.join(root, 'unet');
    fs.mkdirSync(path.join(root, 'outside'), { recursive: true });
    fs.mkdirSync(comp, { recursive: true });
    fs.writeFileSync(path.join(root, 'outside', 'w.safetensors'), encodeSafetensors({ a: { values: new Float32Array(4), shape: [4] } }));
    fs.writeFileSync(path.join(comp, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../outside/w.safetensors' } }));
    await expect(openComponentWeights(comp)).rejects.toThrow(/diffusion_pytorch_model\.safetensors\.index\.json: weight_map file "\.\.\/outside\/w\.safetensors" has a "\.\." segment/);
  });
});
