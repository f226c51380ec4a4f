/**
 * `tgate convert` stays inside its input and output folders: component names from model_index.json cannot
 * reach elsewhere, `--force` replaces only an empty folder or an earlier conversion's output (marked by
 * tgate-convert.json), and the temporary folder of a killed conversion is cleaned up by the next run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixture } from './support/helpers.js';
import { convertPipeline } from '../src/convert/convert.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MARKER = 'tgate-convert.json';
let work: string;
let n = 0;

beforeAll(() => { work = fs.mkdtempSync(path.join(os.tmpdir(), 'convert-safety-')); });
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A fresh folder under the work folder. */
const fresh = (name: string): string => {
  const d = path.join(work, `${name}-${n++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

/** A pipeline folder with only a copied component (scheduler), plus `extra` model_index keys. */
function smallPipeline(dir: string, extra: Record<string, unknown> = {}): void {
  fs.mkdirSync(path.join(dir, 'scheduler'), { recursive: true });
  fs.copyFileSync(fixture('pipelines/sd15_tiny/scheduler/scheduler_config.json'), path.join(dir, 'scheduler', 'scheduler_config.json'));
  fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline', scheduler: ['diffusers', 'PNDMScheduler'], ...extra }));
}

describe('component names', () => {
  test.each(['../payload', '/abs', 'a\\..\\b', '%2e%2e', 'x/../../y'])('model_index key %j is refused; nothing is read or written outside (was: "../payload" copied next to the output)', async (key) => {
    const root = fresh('names');
    const src = path.join(root, 'in', 'pipe');
    smallPipeline(src, { [key]: ['diffusers', 'Payload'] });
    fs.mkdirSync(path.join(root, 'in', 'payload'), { recursive: true });
    fs.writeFileSync(path.join(root, 'in', 'payload', 'secret.txt'), 'secret');
    const out = path.join(root, 'out', 'o');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await expect(convertPipeline(src, out)).rejects.toThrow(/model_index\.json: component name .* a component is a folder of the pipeline, named plainly/);
    expect(fs.readdirSync(path.join(root, 'out'))).toEqual([]);
  });

  test('a component entry that is not [library, class] is named', async () => {
    const src = fresh('entry');
    smallPipeline(src, { unet: ['diffusers'] });
    await expect(convertPipeline(src, path.join(work, 'entry-out'))).rejects.toThrow(/model_index\.json: component "unet"=\["diffusers"\] is invalid: expected \[library, class\]/);
  });
});

describe('--force', () => {
  test('refuses a non-empty folder that is not an earlier output, naming the flag (was: replaced it)', async () => {
    const src = fresh('src');
    smallPipeline(src);
    const out = fresh('mine');
    fs.writeFileSync(path.join(out, 'thesis.tex'), 'years of work');
    await expect(convertPipeline(src, out, { force: true })).rejects.toThrow(/is not empty and is not the output of an earlier tgate convert \(it has no tgate-convert\.json\): --force replaces only/);
    expect(fs.readFileSync(path.join(out, 'thesis.tex'), 'utf8')).toBe('years of work');
    expect(fs.readdirSync(path.dirname(out)).filter((f) => f.startsWith(`${path.basename(out)}.`))).toEqual([]);
  });

  test('refuses a file', async () => {
    const src = fresh('src');
    smallPipeline(src);
    const out = path.join(fresh('file'), 'out');
    fs.writeFileSync(out, 'x');
    await expect(convertPipeline(src, out, { force: true })).rejects.toThrow(/exists and is not a folder: --force replaces only/);
  });

  test('replaces an empty folder, then its own output; the output carries the marker', async () => {
    const src = fresh('src');
    smallPipeline(src);
    const out = fresh('empty');
    await expect(convertPipeline(src, out)).rejects.toThrow(/already exists \(use --force/);
    await convertPipeline(src, out, { force: true });
    expect(JSON.parse(fs.readFileSync(path.join(out, MARKER), 'utf8'))).toMatchObject({ written_by: 'tgate convert', kind: 'pipeline' });
    fs.writeFileSync(path.join(out, 'scheduler', 'scheduler_config.json'), '{}');
    await convertPipeline(src, out, { force: true });
    expect(fs.readFileSync(path.join(out, 'scheduler', 'scheduler_config.json'))).toEqual(fs.readFileSync(path.join(src, 'scheduler', 'scheduler_config.json')));
  });
});

describe('a killed conversion', () => {
  test('leaves <out>.tmp-<pid> with the marker; the next run removes it, and only ours', async () => {
    const root = fresh('killed');
    const out = path.join(root, 'out');
    const script = path.join(root, 'convert-and-hang.mts');
    fs.writeFileSync(script, `
      import { convertPipeline } from ${JSON.stringify(path.join(ROOT, 'src/convert/convert.ts'))};
      let started = false;
      await convertPipeline(${JSON.stringify(fixture('pipelines/sd15_tiny'))}, ${JSON.stringify(out)}, { shardMb: 0.01 }, (p) => {
        if (p.phase !== 'tensor' || started) return;
        started = true;
        process.stdout.write('started ' + process.pid + '\\n');
        // Hang mid-conversion until killed.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });
    `);
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = await new Promise<number>((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /started (\d+)/.exec(text);
        if (m) resolve(Number(m[1]));
      });
      child.on('exit', (code) => reject(new Error(`the conversion exited (${code}) before it started`)));
    });
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const tmp = `${out}.tmp-${pid}`;
    expect(fs.existsSync(path.join(tmp, MARKER))).toBe(true);
    // Not ours: no marker, or a process that is alive (this one's parent).
    const foreign = `${out}.tmp-1234567`;
    fs.mkdirSync(foreign);
    const running = `${out}.tmp-${process.ppid}`;
    fs.mkdirSync(running);
    fs.writeFileSync(path.join(running, MARKER), JSON.stringify({ written_by: 'tgate convert' }));

    const src = fresh('src');
    smallPipeline(src);
    await convertPipeline(src, out);
    expect(fs.existsSync(tmp)).toBe(false);
    expect(fs.existsSync(foreign)).toBe(true);
    expect(fs.existsSync(running)).toBe(true);
    expect(fs.existsSync(path.join(out, MARKER))).toBe(true);
  }, 60_000);
});
