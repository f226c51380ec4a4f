/** Headless Chromium for the browser tests: a read-only server of the repository, a page bundle and a launched browser. */
import http from 'node:http';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

const TYPES: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm', '.map': 'application/json',
};

/**
 * Serves `root`'s files read-only on 127.0.0.1 (pages and converted models share the origin), as a static
 * host does: GET, HEAD, and one `Range: bytes=a-b` per request (206), which LoRA files are read by.
 * `log`, when given, receives `METHOD /path[ range]` for every request.
 */
export function serve(root: string, log?: string[]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const p = path.join(root, url);
    const range = req.headers.range;
    log?.push(`${req.method} ${url}${range ? ` ${range}` : ''}`);
    if (!p.startsWith(root + path.sep) || (req.method !== 'GET' && req.method !== 'HEAD')) { res.writeHead(403).end(); return; }
    readFile(p).then(
      (body) => {
        const headers = { 'content-type': TYPES[path.extname(p)] ?? 'application/octet-stream', 'accept-ranges': 'bytes' };
        const m = range === undefined ? null : /^bytes=(\d+)-(\d+)$/.exec(range);
        if (range !== undefined && (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) >= body.length)) {
          res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
          return;
        }
        const part = m ? body.subarray(Number(m[1]), Number(m[2]) + 1) : body;
        res.writeHead(m ? 206 : 200, { ...headers, 'content-length': part.length, ...(m && { 'content-range': `bytes ${m[1]}-${m[2]}/${body.length}` }) });
        res.end(req.method === 'HEAD' ? undefined : part);
      },
      () => res.writeHead(404).end(),
    );
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * Bundles `entry` for the browser into `outDir` (emptied first) with an index.html that loads it, and copies
 * TF.js's .wasm binaries beside it (the page points `setWasmPaths` at its own folder).
 */
export async function bundlePage(entry: string, outDir: string): Promise<void> {
  const { build } = await import('esbuild');
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  // Splitting keeps the Node-only readers, imported on demand, in chunks the page never loads.
  await build({
    entryPoints: [entry], outdir: outDir, bundle: true, splitting: true, format: 'esm',
    platform: 'browser', target: 'es2022', external: ['node:*'], logLevel: 'warning',
  });
  const script = `${path.basename(entry, path.extname(entry))}.js`;
  await writeFile(path.join(outDir, 'index.html'), `<!doctype html><meta charset="utf-8"><script type="module" src="./${script}"></script>`);
  const wasmDir = path.join(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const f of await readdir(wasmDir)) if (f.endsWith('.wasm')) await copyFile(path.join(wasmDir, f), path.join(outDir, f));
}

/** Headless Chromium with WebGPU and WebGL on SwiftShader (the CPU), its profile in `profile`. */
export async function launchChromium(profile: string): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-quic',
      '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
    ],
  });
}
