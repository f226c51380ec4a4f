/**
 * Loads the bundled demo pipeline and generates one image with and without TGATE, using only the package's
 * public API: copy this file into a project that depends on tgate-tfjs and run it as it is.
 *
 *   npx tsx examples/node/generate.ts [backend] [outDir]      (backend: wasm (default), cpu, webgpu, auto)
 *
 * Writes <outDir>/plain.png and <outDir>/tgate.png (default outDir: ./example-output).
 */
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { demoModelDir, initBackend, loadPipeline, savePNG, type BackendChoice } from 'tgate-tfjs';

const backend = (process.argv[2] ?? 'wasm') as BackendChoice;
const outDir = path.resolve(process.argv[3] ?? 'example-output');

await initBackend(backend);
const pipe = await loadPipeline(demoModelDir());
// The demo model follows colour, shape and size (not position); seed 7 draws this prompt well.
const settings = { prompt: 'a large red circle', seed: 7, numInferenceSteps: 25, guidanceScale: 7.5 };
await mkdir(outDir, { recursive: true });

for (const [name, tgate] of [['plain', undefined], ['tgate', { gateStep: 10, spInterval: 5, fiInterval: 1, warmUp: 2 }]] as const) {
  const t0 = performance.now();
  const { latents, images } = await pipe.generate({ ...settings, tgate });
  const ms = performance.now() - t0;
  latents.dispose();
  const file = path.join(outDir, `${name}.png`);
  await savePNG(images[0], file);
  console.log(`${name.padEnd(6)} ${ms.toFixed(0).padStart(6)} ms  → ${path.relative(process.cwd(), file)}`);
}
pipe.dispose();
// Dawn (WebGPU in Node) keeps the event loop alive.
process.exit(0);
