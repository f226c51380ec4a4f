/**
 * `tgate generate` checks every flag before it sets up a backend or loads a model: each bad value fails with
 * exit code 1, a message naming the flag as the user typed it, no backend line (nothing was set up or loaded)
 * and no file written. What only the loaded pipeline knows is reported with the flag's name too (flags.ts).
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBuilt, tgate } from './support/cli.js';
import { encodePNG } from '../src/io/png.js';
import { withFlagNames } from '../src/cli/flags.js';

let tmp: string;
let outDir: string;
const IMG = () => path.join(tmp, 'in.png');
const SMALL = () => path.join(tmp, 'small.png');

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tgate-cli-checks-'));
  outDir = path.join(tmp, 'out');
  mkdirSync(outDir);
  mkdirSync(path.join(outDir, 'taken.png'));
  const img = (side: number) => encodePNG({ width: side, height: side, data: new Uint8Array(side * side * 3).fill(200) });
  writeFileSync(IMG(), await img(64));
  writeFileSync(SMALL(), await img(32));
  writeFileSync(path.join(tmp, 'not.png'), 'hello');
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs generate with a good prompt and output plus `args`; expects it to fail before anything is set up. */
async function refused(args: string[], message: RegExp, output = path.join(outDir, 'x.png')): Promise<void> {
  const before = readdirSync(outDir).sort();
  const r = await tgate('generate', '--prompt', 'a large red circle', '--output', output, ...args).then(
    (ok) => ({ code: 0, ...ok }), (e: { code: number; stdout: string; stderr: string }) => e);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\[tgate\] backend|loading/);
  expect(readdirSync(outDir).sort()).toEqual(before);
}

/** Arguments, or a function of the files beforeAll makes. */
type Args = string[] | (() => string[]);

const CASES: [string, Args, RegExp][] = [
  ['steps', ['--steps', '0'], /--steps must be an integer ≥ 1, got 0/],
  ['seed range', ['--seed', '4294967296'], /--seed must be an integer in 0…4294967295, got 4294967296/],
  ['size multiple (the demo model: VAE 4 × UNet 4)', ['--height', '40'], /--height must be a positive multiple of 16 for this model, got 40/],
  ['scheduler name', ['--scheduler', 'EulerScheduler'], /--scheduler EulerScheduler is not a sampler .*EulerDiscreteScheduler/],
  ['gate beyond the steps', ['--steps', '5', '--gate-step', '9'], /--gate-step 9 is beyond the 5 inference steps/],
  ['gate beyond the img2img steps that run', () => ['--image', IMG(), '--strength', '0.5', '--steps', '10', '--gate-step', '6'], /--gate-step 6 is beyond the 5 .*--strength 0.5 of --steps 10/],
  ['gate word', ['--gate-step', 'soon'], /--gate-step must be a positive integer or "auto", got "soon"/],
  ['strength range', () => ['--image', IMG(), '--strength', '1.5'], /--strength must be in \(0, 1\], got 1.5/],
  ['strength without an image', ['--strength', '0.5'], /--strength needs --image/],
  ['images per prompt', ['--num-images', '0'], /--num-images must be an integer ≥ 1, got 0/],
  ['guidance rescale', ['--guidance-rescale', '2'], /--guidance-rescale must be in \[0, 1\], got 2/],
  ['negative prompts', ['--prompt', 'a small blue square', '--prompt', 'a large red square', '--negative-prompt', 'x', '--negative-prompt', 'y'],
    /--negative-prompt was given 2 times for 3 prompts/],
  ['image that is not a PNG', () => ['--image', path.join(tmp, 'not.png')], /--image .*not\.png is not a PNG file/],
  ['image that does not exist', () => ['--image', path.join(tmp, 'none.png')], /--image .*none\.png: cannot read it \(ENOENT\)/],
  ['image of the wrong size', () => ['--image', IMG(), '--width', '32'], /--image .* is 64×64 but --width 32 --height 64 was asked/],
  ['mask of another size', () => ['--image', IMG(), '--mask', SMALL()], /--mask .*small\.png is 32×32 but --image .*in\.png is 64×64/],
  ['mask without an image', () => ['--mask', SMALL()], /--mask needs --image/],
  ['LoRA file', ['--lora', 'missing-lora.safetensors:0.7'], /--lora missing-lora\.safetensors: no such file/],
  ['thread count, with --backend auto', ['--threads', '9'], /--threads must be an integer from 1 to 8, got 9/],
  ['grid with latents', ['--grid', '--output-type', 'latent'], /--grid makes an image/],
];

test.each(CASES)('%s', async (_name, args, re) => {
  await refused(typeof args === 'function' ? args() : args, re);
}, 60_000);

test('an output folder that does not exist, or an output that is a folder', async () => {
  await refused([], /--output .*: the folder .*nowhere does not exist/, path.join(tmp, 'nowhere', 'x.png'));
  await refused([], /--output: .*taken\.png is a folder; name a file/, path.join(outDir, 'taken.png'));
  // With several images the outputs are NAME-0.png, …: none may be a folder either.
  mkdirSync(path.join(outDir, 'many-1.png'));
  try {
    await refused(['--num-images', '2'], /--output: .*many-1\.png is a folder/, path.join(outDir, 'many.png'));
  } finally {
    rmSync(path.join(outDir, 'many-1.png'), { recursive: true });
  }
}, 60_000);

(process.getuid?.() === 0 ? test.skip : test)('an output folder that is not writable', async () => {
  const ro = path.join(tmp, 'ro');
  mkdirSync(ro);
  chmodSync(ro, 0o555);
  await refused([], /--output .*: the folder .*ro is not writable/, path.join(ro, 'x.png'));
}, 60_000);

test('no --output, no prompt', async () => {
  await expect(tgate('generate', '--prompt', 'a red circle')).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/--output is required/) });
  await expect(tgate('generate', '--output', path.join(outDir, 'x.png'))).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/give --prompt or --prompt-embeds/) });
});

test('what only the loaded pipeline can check is reported with the flag\'s name', async () => {
  // The demo model's text encoder has 3 layers: --clip-skip 5 is out of range, which the pipeline finds.
  await expect(tgate('generate', '--prompt', 'a red circle', '--clip-skip', '5', '--steps', '2', '--backend', 'wasm', '--output', path.join(outDir, 'c.png')))
    .rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/tgate: --clip-skip must be an integer in 0…\d+ \(the text encoder has 3 layers\), got 5/) });
  expect(existsSync(path.join(outDir, 'c.png'))).toBe(false);
}, 120_000);

test('the flag table maps the library\'s option names, and leaves words alone', () => {
  expect(withFlagNames('tgate.gateStep 9 is beyond the 5 inference steps')).toBe('--gate-step 9 is beyond the 5 inference steps');
  expect(withFlagNames('strength 0.1 × 2 steps leaves no step to run: raise strength or numInferenceSteps'))
    .toBe('--strength 0.1 × 2 steps leaves no step to run: raise strength or --steps');
  expect(withFlagNames('promptEmbeds for SDXL need pooledPromptEmbeds too'))
    .toBe('prompt_embeds (--prompt-embeds) for SDXL need pooled_prompt_embeds (--prompt-embeds) too');
  expect(withFlagNames('negativePrompt has 3 entries; numImagesPerPrompt must be ≥ 1; wasmThreads 9'))
    .toBe('--negative-prompt has 3 entries; --num-images must be ≥ 1; --threads 9');
  expect(withFlagNames('the image has 2 images')).toBe('the image has 2 images');
});
