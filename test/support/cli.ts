/** Running the built CLI (`node bin/tgate.js …`) as a user runs it, from the tests. */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fixture } from './helpers.js';
import { decodePNG, type RGBImage } from '../../src/io/png.js';

const run = promisify(execFile);
export const ROOT = path.resolve(fixture('..', '..'));
const BIN = path.join(ROOT, 'bin', 'tgate.js');

export interface CliResult { stdout: string; stderr: string }

/** Runs `tgate …`; rejects (with `code`, `stdout`, `stderr`) when it exits with a non-zero status. */
export function tgate(...args: string[]): Promise<CliResult> {
  return run('node', [BIN, ...args], { cwd: ROOT, maxBuffer: 1 << 24, env: { ...process.env, FORCE_COLOR: '0' } });
}

/** The CLI runs from dist/ (built by `npm install`'s prepare); builds it if this checkout has not. */
export async function ensureBuilt(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT });
}

export const readImage = (file: string): Promise<RGBImage> => decodePNG(readFileSync(file), file);

/** Whether two images have the same size and the same bytes. */
export const sameImage = (a: RGBImage, b: RGBImage): boolean =>
  a.width === b.width && a.height === b.height && Buffer.compare(Buffer.from(a.data), Buffer.from(b.data)) === 0;
