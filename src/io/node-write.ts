/** Writing a file in Node (imported on demand, so browser bundles never load `node:fs`). */
import { rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes a file through a temporary sibling and a rename, so a failure never leaves half a file. */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw new Error(`cannot write ${file}: ${(e as Error).message}`);
  }
}
