/**
 * The README's pictures, made by the README's own commands, and checked with the demo model's evaluator.
 *
 *   npx tsx scripts/readme-images.ts            runs each command of README_RUNS with the built CLI (bin/tgate.js,
 *                                                `npm run build` first) on wasm, checks that the evaluator reads what
 *                                                the prompt says, and writes the enlarged pictures to docs/
 *   npx tsx scripts/readme-images.ts --survey [--seeds N]
 *                                                how often the demo model follows each "a {size} {colour} {shape}"
 *                                                prompt over N images (default 8), to choose the README's prompts
 *
 * The demo model (assets/tiny-shapes) follows colour, size and, most of the time, shape; it does not follow
 * position (its README: position accuracy is at chance), so the README's prompts name no position.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  COLOURS, SHAPES, SIZES, evaluateShapeImage, parseCaption, scorePrediction, type ShapePrediction,
} from '../src/eval/index.js';
import { decodePNG, savePNG, type RGBImage } from '../src/io/png.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One README picture: the `tgate generate` arguments (as the README prints them), its file and enlargement. */
interface ReadmeRun { picture: string; scale: number; args: string[]; prompts: string[] }

const PROMPT = 'a large red circle';
const SEED = '7';
const GRID_PROMPTS = ['a small green triangle', 'a large blue circle', 'a large yellow triangle'];
export const README_RUNS: ReadmeRun[] = [
  { picture: 'docs/demo-4x.png', scale: 4, prompts: [PROMPT], args: ['--prompt', PROMPT, '--seed', SEED] },
  { picture: 'docs/demo-tgate-4x.png', scale: 4, prompts: [PROMPT], args: ['--prompt', PROMPT, '--seed', SEED, '--gate-step', '10'] },
  {
    picture: 'docs/demo-grid-2x.png', scale: 2, prompts: GRID_PROMPTS.flatMap((p) => [p, p, p, p]),
    args: [...GRID_PROMPTS.flatMap((p) => ['--prompt', p]), '--num-images', '4', '--grid', '--seed', '1'],
  },
];

/** Nearest-neighbour enlargement (the pictures are 64×64). */
function enlarge(img: RGBImage, k: number): RGBImage {
  const width = img.width * k;
  const height = img.height * k;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = ((Math.floor(y / k) * img.width) + Math.floor(x / k)) * 3;
      data.set(img.data.subarray(s, s + 3), (y * width + x) * 3);
    }
  }
  return { width, height, data };
}

/** Whether the evaluator reads every attribute the prompt names. */
function follows(prompt: string, pred: ShapePrediction): boolean {
  const s = scorePrediction(parseCaption(prompt), pred);
  return [s.colour, s.shape, s.size, s.position].every((v) => v !== false);
}

/** The cells of a contact sheet written by --grid (2-pixel gaps), in row order. */
function cells(sheet: RGBImage, n: number, side = 64, gap = 2): RGBImage[] {
  const cols = Math.round((sheet.width + gap) / (side + gap));
  return Array.from({ length: n }, (_, i) => {
    const x0 = (i % cols) * (side + gap);
    const y0 = Math.floor(i / cols) * (side + gap);
    const data = new Uint8Array(side * side * 3);
    for (let y = 0; y < side; y++) data.set(sheet.data.subarray(((y0 + y) * sheet.width + x0) * 3, ((y0 + y) * sheet.width + x0 + side) * 3), y * side * 3);
    return { width: side, height: side, data };
  });
}

async function makePictures(): Promise<void> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-readme-'));
  let bad = 0;
  try {
    for (const run of README_RUNS) {
      const out = path.join(tmp, path.basename(run.picture));
      const args = [path.join(ROOT, 'bin', 'tgate.js'), 'generate', ...run.args, '--backend', 'wasm', '--output', out];
      console.log(`tgate ${args.slice(1, -2).join(' ')}`);
      execFileSync(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] }); // its stderr comes with an error
      const img = await decodePNG(readFileSync(out), out);
      const parts = run.prompts.length > 1 || img.width > 64 ? cells(img, run.prompts.length) : [img];
      parts.forEach((p, i) => {
        const pred = evaluateShapeImage(p.data);
        const ok = follows(run.prompts[i], pred);
        if (!ok) bad++;
        console.log(`  "${run.prompts[i]}" → ${pred.size} ${pred.colour} ${pred.shape} (at ${pred.position}) ${ok ? 'ok' : 'DOES NOT FOLLOW THE PROMPT'}`);
      });
      await savePNG(enlarge(img, run.scale), path.join(ROOT, run.picture));
      console.log(`  → ${run.picture}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (bad) throw new Error(`${bad} picture(s) do not show what their prompt says: choose other prompts or seeds (--survey)`);
}

async function survey(seeds: number): Promise<void> {
  const { initBackend, loadPipeline, demoModelDir } = await import('../src/index.js');
  await initBackend('wasm', { quiet: true });
  const pipe = await loadPipeline(demoModelDir());
  const rows: { prompt: string; hits: number }[] = [];
  try {
    for (const size of SIZES) {
      for (const colour of COLOURS) {
        for (const shape of SHAPES) {
          const prompt = `a ${size} ${colour} ${shape}`;
          const { latents, images } = await pipe.generate({ prompt, numImagesPerPrompt: seeds, seed: 0, numInferenceSteps: 25 });
          latents.dispose();
          const hits = images.filter((img) => follows(prompt, evaluateShapeImage(img.data))).length;
          rows.push({ prompt, hits });
          console.log(`${prompt.padEnd(28)} ${hits}/${seeds}`);
        }
      }
    }
  } finally {
    pipe.dispose();
  }
  rows.sort((a, b) => b.hits - a.hits);
  console.log(`\nbest: ${rows.slice(0, 8).map((r) => `"${r.prompt}" ${r.hits}/${seeds}`).join(', ')}`);
}

const argv = process.argv.slice(2);
if (argv.includes('--survey')) {
  const i = argv.indexOf('--seeds');
  await survey(i >= 0 ? Number(argv[i + 1]) : 8);
} else {
  await makePictures();
}
process.exit(0);
