/**
 * The package as a user installs it: a project folder whose node_modules/tgate-tfjs links this checkout loads it
 * with require() and with import (package.json "exports"), finds the bundled demo model, and runs
 * examples/node/generate.ts copied into it; a browser bundle of the package entry builds and loads no Node module
 * at start-up; the PNG helpers.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { ROOT, ensureBuilt, readImage } from './support/cli.js';
import { decodePNG, encodePNG, savePNG, MAX_PNG_PIXELS } from '../src/io/png.js';
import { evaluateShapeImage } from '../src/eval/index.js';

const run = promisify(execFile);
let project: string;

beforeAll(async () => {
  await ensureBuilt();
  project = mkdtempSync(path.join(os.tmpdir(), 'tgate-user-project-'));
  mkdirSync(path.join(project, 'node_modules'));
  symlinkSync(ROOT, path.join(project, 'node_modules', 'tgate-tfjs'), 'dir');
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ type: 'module', dependencies: { 'tgate-tfjs': '*' } }));
}, 300_000);
afterAll(() => rmSync(project, { recursive: true, force: true }));

/** What a script sees of the package: named exports, and whether demoModelDir() is a pipeline folder. */
const PROBE = `({ loadPipeline: typeof t.loadPipeline, savePNG: typeof t.savePNG, samplers: t.SCHEDULER_LIST.length,
  demo: require('node:fs').existsSync(require('node:path').join(t.demoModelDir(), 'model_index.json')) })`;

test('require("tgate-tfjs") loads the package (Node ≥ 20.19 loads ES modules through require)', async () => {
  // A .cjs file: the project itself is an ES module project.
  const script = path.join(project, 'probe.cjs');
  writeFileSync(script, `const t = require('tgate-tfjs'); console.log(JSON.stringify(${PROBE}))`);
  const { stdout } = await run(process.execPath, [script], { cwd: project });
  expect(JSON.parse(stdout)).toEqual({ loadPipeline: 'function', savePNG: 'function', samplers: 11, demo: true });
  // And from a CommonJS project's command line.
  const { stdout: inline } = await run(process.execPath, ['--input-type=commonjs', '-e', `const t = require('tgate-tfjs'); console.log(JSON.stringify(${PROBE}))`], { cwd: project });
  expect(JSON.parse(inline)).toEqual(JSON.parse(stdout));
});

test('import("tgate-tfjs") gives the same', async () => {
  const script = `import * as t from 'tgate-tfjs'; import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);
    console.log(JSON.stringify(${PROBE}))`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: project });
  expect(JSON.parse(stdout)).toEqual({ loadPipeline: 'function', savePNG: 'function', samplers: 11, demo: true });
});

test('examples/node/generate.ts runs copied into a project, and its images show what its prompt says', async () => {
  const file = path.join(project, 'generate.ts');
  copyFileSync(path.join(ROOT, 'examples', 'node', 'generate.ts'), file);
  const prompt = /prompt: '([^']+)'/.exec(readFileSync(file, 'utf8'))![1];
  const outDir = path.join(project, 'out');
  // tsx is the repository's; the example resolves tgate-tfjs from the project folder.
  const { stdout } = await run(process.execPath, ['--import', 'tsx', file, 'wasm', outDir], { cwd: ROOT, env: { ...process.env, FORCE_COLOR: '0' } });
  expect(stdout).toMatch(/plain .* ms/);
  for (const name of ['plain', 'tgate']) {
    const img = await readImage(path.join(outDir, `${name}.png`));
    const pred = evaluateShapeImage(img.data);
    expect(`a ${pred.size} ${pred.colour} ${pred.shape}`).toBe(prompt);
  }
}, 180_000);

test('a browser bundle of the package entry builds, and loads no Node module at start-up', async () => {
  const outdir = path.join(project, 'bundle');
  const result = await build({
    entryPoints: [path.join(ROOT, 'src', 'index.ts')], outdir, bundle: true, splitting: true, format: 'esm', platform: 'browser',
    external: ['node:*'], metafile: true, logLevel: 'silent', write: false,
  });
  const entry = Object.keys(result.metafile.outputs).find((f) => f.endsWith('index.js'))!;
  const seen = new Set<string>();
  const startup: string[] = [];
  for (const queue = [entry]; queue.length;) {
    const f = queue.pop()!;
    if (seen.has(f) || !result.metafile.outputs[f]) continue;
    seen.add(f);
    for (const i of result.metafile.outputs[f].imports) {
      if (i.kind !== 'import-statement') continue;
      if (i.path.startsWith('node:')) startup.push(i.path);
      else queue.push(i.path);
    }
  }
  expect(startup).toEqual([]);
}, 120_000);

describe('PNG helpers', () => {
  const img = { width: 3, height: 2, data: Uint8Array.from({ length: 18 }, (_, i) => i * 13) };

  test('savePNG writes a file decodePNG reads back byte for byte', async () => {
    const file = path.join(project, 'x.png');
    await savePNG(img, file);
    expect(await decodePNG(readFileSync(file))).toEqual(img);
    expect(existsSync(`${file}.tmp-${process.pid}`)).toBe(false);
  });

  test('decodePNG refuses a header of too many pixels before decoding, and names the file', async () => {
    const bytes = await encodePNG(img);
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(16, 100_000);
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(20, 100_000);
    await expect(decodePNG(bytes, 'huge.png')).rejects.toThrow(`huge.png is 100000×100000: a PNG must have 1 to ${MAX_PNG_PIXELS} pixels`);
    await expect(decodePNG(new TextEncoder().encode('GIF89a........................'), 'a.gif')).rejects.toThrow('a.gif is not a PNG file');
    await expect(encodePNG({ width: 2, height: 2, data: new Uint8Array(5) })).rejects.toThrow(/not an RGB image/);
  });
});
