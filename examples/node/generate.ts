/**
 * Builds the demo pipeline in code and generates one image with and without TGATE.
 *
 *   npx tsx examples/node/generate.ts [backend] [outDir]      (backend: wasm (default), cpu, webgpu, auto)
 *
 * Writes <outDir>/plain.png and <outDir>/tgate.png (default outDir: test-output/example-node).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, type BackendChoice } from '../../src/backends/index.js';
import { loadPipeline } from '../../src/pipelines/load.js';
import { encodePNG } from '../../src/io/png.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const backend = (process.argv[2] ?? 'wasm') as BackendChoice;
const outDir = path.resolve(process.argv[3] ?? path.join(root, 'test-output/example-node'));

await initBackend(backend);
const pipe = await loadPipeline(path.join(root, 'assets/tiny-shapes'));
const settings = { prompt: 'a large blue circle in the center', seed: 42, numInferenceSteps: 25, guidanceScale: 7.5 };
await mkdir(outDir, { recursive: true });

for (const [name, tgate] of [['plain', undefined], ['tgate', { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }]] as const) {
  const t0 = performance.now();
  const { latents, images } = await pipe.generate({ ...settings, tgate });
  const ms = performance.now() - t0;
  latents.dispose();
  const file = path.join(outDir, `${name}.png`);
  await writeFile(file, await encodePNG(images[0]!));
  console.log(`${name.padEnd(6)} ${ms.toFixed(0).padStart(6)} ms  → ${path.relative(process.cwd(), file)}`);
}
pipe.dispose();
// Dawn (WebGPU in Node) keeps the event loop alive.
process.exit(0);
