/** Spawns test/webgpu-child.ts (see there for why WebGPU runs in a child process) and returns its result. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export async function runWebgpuChild<T>(job: object, timeoutMs = 240000): Promise<({ skip: string } | ({ skip?: undefined; details?: string } & T))> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tgate-webgpu-'));
  const out = path.join(dir, 'result.json');
  try {
    // Mesa's EGL needs a platform on machines without a display; Vulkan, when present, ignores it.
    const env = { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' };
    await new Promise<void>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', path.join(HERE, 'webgpu-child.ts'), JSON.stringify(job), out],
        { cwd: path.join(HERE, '..'), env, timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 },
        (err, _stdout, stderr) => (err ? reject(new Error(`webgpu child failed: ${err.message}\n${stderr.slice(-3000)}`)) : resolve()));
    });
    return JSON.parse(await readFile(out, 'utf8'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
