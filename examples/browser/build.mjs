// Bundles the browser demo from the project's sources: examples/browser/dist/{index.html,main.js,*.wasm}.
//   npm run build:browser            (serve the repo root, open /examples/browser/dist/)
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'dist');
const require = createRequire(import.meta.url);
const wasmDir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: [path.join(here, 'main.ts')],
  outdir: out,
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  // Code splitting keeps modules that are only imported dynamically (the Node file readers) in chunks the
  // page never loads; without it their static node: imports would be hoisted into main.js.
  splitting: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  minify: process.argv.includes('--minify'),
  // Node-only code paths import these dynamically behind environment checks; they must never load here.
  external: ['node:*'],
  metafile: true,
  logLevel: 'warning',
});
// Whatever main.js loads up front (itself and its static imports) must not import Node modules.
const outputs = result.metafile.outputs;
const rel = (f) => path.relative(process.cwd(), f).split(path.sep).join('/');
const entry = rel(path.join(out, 'main.js'));
const seen = new Set();
const bad = [];
for (const queue = [entry]; queue.length;) {
  const f = queue.pop();
  if (seen.has(f) || !outputs[f]) continue;
  seen.add(f);
  for (const i of outputs[f].imports) {
    if (i.kind !== 'import-statement') continue;
    if (i.path.startsWith('node:')) bad.push(`${f} → ${i.path}`);
    else queue.push(i.path);
  }
}
if (bad.length) throw new Error(`the browser bundle loads Node modules at start-up: ${bad.join(', ')}`);
await copyFile(path.join(here, 'index.html'), path.join(out, 'index.html'));
for (const f of await readdir(wasmDir)) {
  if (f.endsWith('.wasm')) await copyFile(path.join(wasmDir, f), path.join(out, f));
}
const bytes = Object.values(result.metafile.outputs).reduce((a, o) => a + o.bytes, 0);
console.log(`browser demo → ${path.relative(process.cwd(), out)}/ (${(bytes / 2 ** 20).toFixed(1)} MiB incl. source map)`);
