/**
 * The output folder of `tgate convert`: written in `<out>.tmp-<pid>` and renamed into place only when complete,
 * marked as ours, replaced with `--force` only when it is empty or an earlier conversion's, and cleaned up
 * after a conversion that was killed.
 *
 * The marker is `tgate-convert.json` ({@link MARKER_FILE}), the first file written into the temporary folder:
 * it stays in the finished output, so an output folder, a temporary folder left by a killed conversion and the
 * `<out>.old-<pid>` folder of an interrupted replacement can all be recognised as ours before anything is
 * deleted. A folder without it is never removed.
 */
import path from 'node:path';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';

/** The file that marks a folder as written by `tgate convert`. */
export const MARKER_FILE = 'tgate-convert.json';
const WRITTEN_BY = 'tgate convert';

/** Outputs being written by this process (two conversions to one folder would share `<out>.tmp-<pid>`). */
const inProgress = new Set<string>();

/** Whether `dir` holds our marker. */
export async function hasMarker(dir: string): Promise<boolean> {
  try {
    const m = JSON.parse(await readFile(path.join(dir, MARKER_FILE), 'utf8')) as { written_by?: unknown };
    return m?.written_by === WRITTEN_BY;
  } catch {
    return false;
  }
}

/** Whether process `pid` is running (EPERM: it exists, as another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes `<out>.tmp-<pid>` and `<out>.old-<pid>` folders left by conversions that were killed: only those whose
 * process is gone and that hold our marker. Returns the folders removed. `holding`: the caller is the conversion
 * to `out` registered in this process, so folders with this process's pid are leftovers of an earlier owner.
 */
export async function removeStale(out: string, holding = false): Promise<string[]> {
  const parent = path.dirname(path.resolve(out));
  const base = path.basename(path.resolve(out));
  const removed: string[] = [];
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(`${base}.`)) continue;
    const m = /^\.(tmp|old)-(\d{1,10})$/.exec(name.slice(base.length));
    if (!m) continue;
    const pid = Number(m[2]);
    const dir = path.join(parent, name);
    if (pid === process.pid ? inProgress.has(path.resolve(out)) && !holding : alive(pid)) continue;
    if (!(await hasMarker(dir))) continue;
    await rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/**
 * Checks `out` before anything is read or written: never the input or a folder holding it; an existing folder
 * only with `force`, and then only when it is empty or an earlier conversion's output.
 */
export async function checkOutput(src: string, out: string, force: boolean): Promise<void> {
  const a = path.resolve(src);
  const b = path.resolve(out);
  if (a === b || a.startsWith(b + path.sep)) throw new Error(`output folder ${out} would contain or replace the input ${src}`);
  const st = await stat(out).catch(() => null);
  if (!st) return;
  if (!force) throw new Error(`output folder ${out} already exists (use --force to replace an earlier conversion)`);
  if (!st.isDirectory()) throw new Error(`output ${out} exists and is not a folder: --force replaces only an empty folder or an earlier conversion's output`);
  if ((await readdir(out)).length > 0 && !(await hasMarker(out))) {
    throw new Error(`output folder ${out} is not empty and is not the output of an earlier tgate convert (it has no ${MARKER_FILE}): `
      + '--force replaces only an empty folder or an earlier conversion\'s output; remove it yourself or choose another folder');
  }
}

/**
 * Runs `write(tmp)` in `<out>.tmp-<pid>` (marked first) and moves the result to `out` only if it completes;
 * removes the temporary folder otherwise. Stale folders of killed conversions are removed first.
 */
export async function atomically<T>(out: string, force: boolean, kind: 'pipeline' | 'component', write: (tmp: string) => Promise<T>): Promise<T> {
  const key = path.resolve(out);
  if (inProgress.has(key)) throw new Error(`a conversion to ${out} is already running in this process`);
  inProgress.add(key);
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    // Folders named with this pid are then from a killed process that had it before (pids are reused).
    await removeStale(out, true);
    for (const leftover of [tmp, `${out}.old-${process.pid}`]) {
      if (await stat(leftover).catch(() => null)) throw new Error(`${leftover} exists and was not written by tgate convert: remove it, then retry`);
    }
    await mkdir(tmp, { recursive: true });
    try {
      await writeFile(path.join(tmp, MARKER_FILE), `${JSON.stringify({ written_by: WRITTEN_BY, format: 1, kind }, null, 2)}\n`);
      const r = await write(tmp);
      if (await stat(out).catch(() => null)) {
        if (!force) throw new Error(`output folder ${out} appeared during conversion; not replacing it (use --force)`);
        await checkOutput(tmp, out, true);
        const old = `${out}.old-${process.pid}`;
        await rename(out, old);
        await rename(tmp, out);
        await rm(old, { recursive: true, force: true });
      } else {
        await rename(tmp, out);
      }
      return r;
    } catch (e) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
  } finally {
    inProgress.delete(key);
  }
}
