/**
 * Where model files live: a local folder (Node, read with fs) or a URL — and, in a browser, anything — read
 * with fetch. One place decides which, so configs, tokenizers and weights all resolve a location alike.
 */
import { parseJson } from './json.js';

// A variable specifier: bundlers leave node:fs out of the browser build.
const NODE_FS = 'node:fs/promises';

/** Whether `loc` is read with fetch (a URL, a caller-supplied fetch, or any location in a browser). */
export function isRemote(loc: string, fetchFn?: typeof fetch): boolean {
  return !!fetchFn || /^(https?|blob|data|file):/i.test(loc) || typeof window !== 'undefined';
}

/** Joins a folder location and a file or component name, for paths and URLs alike. */
export function joinLocation(base: string, name: string): string {
  return `${base.replace(/[\\/]+$/, '')}/${name}`;
}

/** Reads `<dir>/<name>`; `undefined` when it does not exist (HTTP 404 or ENOENT), an error otherwise. */
export async function readFileAt(dir: string, name: string, fetchFn?: typeof fetch): Promise<Uint8Array | undefined> {
  const loc = joinLocation(dir, name);
  if (isRemote(dir, fetchFn)) {
    const r = await (fetchFn ?? fetch)(loc);
    if (r.status === 404) return undefined;
    if (!r.ok) throw new Error(`fetching ${loc} failed: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }
  const { readFile } = (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS)) as typeof import('node:fs/promises');
  try {
    return new Uint8Array(await readFile(loc));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Reads and parses `<dir>/<name>` (Python-style JSON accepted); `undefined` when it does not exist. */
export async function readJsonAt<T = Record<string, unknown>>(dir: string, name: string, fetchFn?: typeof fetch): Promise<T | undefined> {
  const b = await readFileAt(dir, name, fetchFn);
  return b ? parseJson<T>(new TextDecoder().decode(b), joinLocation(dir, name)) : undefined;
}
