/**
 * Where model files live: a local folder (Node, read with fs) or a URL — and, in a browser, anything — read
 * with fetch. One place decides which, so configs, tokenizers and weights all resolve a location alike, and
 * one place joins a folder with a name: a name read from a model's files (a manifest's shard path, a sharded
 * index's file, a component name) must stay inside the folder or URL it came with ({@link joinLocation}).
 * Every file is read with a size bound, remote ones through the one fetch path (http-fetch.ts).
 */
import { fetchBytes, type NetOptions } from './http-fetch.js';
import { quoted } from './json-scanner.js';
import { parseJson } from './json.js';

/** Largest JSON file read (configs, model_index.json, tokenizer JSON: CLIP's vocab.json is about 1 MB). */
export const MAX_JSON_BYTES = 16 * 1024 * 1024;
/** Largest other small file read whole (merges.txt about 0.5 MB, T5's spiece.model 0.8 MB, mT5's 4 MB). */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** Longest name joined to a folder. */
const MAX_NAME_CHARS = 1024;

type FsPromises = typeof import('node:fs/promises');
// A variable specifier: bundlers leave node:fs out of the browser build.
const NODE_FS = 'node:fs/promises';
let fsMod: Promise<FsPromises> | undefined;
/** Loads node:fs only when a local path is read, so bundlers leave it out. */
export function nodeFs(): Promise<FsPromises> {
  fsMod ??= import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS) as Promise<FsPromises>;
  return fsMod;
}

/** Whether `loc` is read with fetch (a URL, a caller-supplied fetch, or any location in a browser). */
export function isRemote(loc: string, fetchFn?: typeof fetch): boolean {
  return !!fetchFn || /^(https?|blob|data|file):/i.test(loc) || typeof window !== 'undefined';
}

/**
 * Why `name` is not a plain relative name that stays inside a folder or URL, or null when it is one: path
 * segments separated by `/`, none empty, `.` or `..` (nor dots and spaces only, which Windows reads as `..`),
 * and no absolute path, scheme, drive letter or other origin (`:`), backslash, percent-encoding (which a
 * server may decode into `../`), query, fragment or control character.
 */
export function nameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_NAME_CHARS) return `is longer than ${MAX_NAME_CHARS} characters`;
  if (name.startsWith('/')) return 'is an absolute path';
  if (name.includes(':')) return 'names a scheme, drive or other origin (":")';
  if (name.includes('\\')) return 'contains a backslash';
  if (name.includes('%')) return 'contains percent-encoding';
  if (/[?#]/.test(name)) return 'contains "?" or "#"';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'contains a control character';
  for (const seg of name.split('/')) {
    if (seg === '') return 'has an empty path segment';
    if (/^[. ]+$/.test(seg)) return `has a ${quoted(seg)} segment`;
  }
  return null;
}

/**
 * Joins a folder location and a file or component name, for paths and URLs alike. The name must stay inside
 * the folder ({@link nameProblem}); `from` says where it was read (`<file>: shard path`) for the error.
 */
export function joinLocation(base: string, name: string, from?: string): string {
  const problem = typeof name === 'string' ? nameProblem(name) : 'is not a string';
  const where = (p: string): Error => new Error(
    `${from ?? 'name'} ${typeof name === 'string' ? quoted(name) : String(name)} ${p}: names read from a model's files must stay inside its folder ${base}`,
  );
  if (problem) throw where(problem);
  const dir = base.replace(/[\\/]+$/, '');
  const joined = `${dir}/${name}`;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dir)) {
    // Defence in depth for URLs: what the platform resolves must be under the base too.
    const root = `${new URL(`${dir}/`).href}`;
    if (!new URL(joined).href.startsWith(root)) throw where(`resolves outside ${root}`);
  }
  return joined;
}

/** How a file is read: the network options, and the largest size accepted. */
export interface ReadOptions extends NetOptions {
  maxBytes?: number;
}

/**
 * Reads a local file whole (Node), refusing one larger than `maxBytes` before reading it; `undefined` when
 * it does not exist and `allowMissing`. `what` names the kind of file in the size error.
 */
export async function readLocalFile(file: string, maxBytes: number, what: string, allowMissing = false): Promise<Uint8Array | undefined> {
  const fs = await nodeFs();
  let fh: import('node:fs/promises').FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (allowMissing && (code === 'ENOENT' || code === 'ENOTDIR')) return undefined;
    throw new Error(`cannot read ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`cannot read ${file}: not a file`);
    if (st.size > maxBytes) throw new Error(`${file} is larger than the ${maxBytes}-byte limit for a ${what} (${st.size} bytes)`);
    const buf = new Uint8Array(st.size);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === buf.length ? buf : buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Reads `<dir>/<name>` (at most `maxBytes`, default 64 MiB); `undefined` when it does not exist (HTTP 404 or ENOENT). */
export async function readFileAt(dir: string, name: string, o: ReadOptions = {}): Promise<Uint8Array | undefined> {
  const loc = joinLocation(dir, name);
  const max = o.maxBytes ?? MAX_FILE_BYTES;
  if (isRemote(dir, o.fetch)) return fetchBytes(loc, o, max, name, true);
  return readLocalFile(loc, max, name, true);
}

/**
 * Reads and parses `<dir>/<name>` (at most 16 MiB unless `maxBytes` says otherwise; bounded nesting,
 * Python-style JSON accepted); `undefined` when it does not exist.
 */
export async function readJsonAt<T = Record<string, unknown>>(dir: string, name: string, o: ReadOptions = {}): Promise<T | undefined> {
  const b = await readFileAt(dir, name, { ...o, maxBytes: o.maxBytes ?? MAX_JSON_BYTES });
  return b ? parseJson<T>(b, joinLocation(dir, name)) : undefined;
}
