/**
 * Everything `tgate generate` can check before it loads a model (seconds to minutes for a real one): the output
 * folder, every number's range, the sampler's name, the TGATE schedule against the steps that run, the image and
 * mask files, LoRA files. Errors name the CLI's flags. The pipeline checks again when it runs; what only it can
 * know (the text encoder's depth for --clip-skip) is reported then, through the same flag names (flags.ts).
 */
import { access, constants, stat } from 'node:fs/promises';
import path from 'node:path';
import { SCHEDULER_LIST } from '../samplers/index.js';
import { resolveTgate, type TgateOptions } from '../attention/tgate.js';
import { defaultStrength, strengthSteps } from '../pipelines/start.js';
import { readConfig, readModelIndex } from '../io/component-source.js';
import { isRemote, joinLocation } from '../io/location.js';
import type { RGBImage } from '../io/png.js';
import { demoModelDir } from './options.js';
import { readPNG } from './files.js';
import { outputFiles } from './outputs.js';
import { parseLoraArg, type LoraArg } from './lora-arg.js';
import { withFlagNames } from './flags.js';
import type { GenerateArgs } from './generate-options.js';
import { controlnetGenerateOptions, controlnetLoadOptions } from './controlnet-options.js';
import type { ControlNetGenerateOptions } from '../pipelines/controlnet-step.js';
import type { LoadOptions } from '../pipelines/load.js';

/** What the checks resolved: the inputs the run uses. */
export interface GeneratePlan {
  dir: string;
  prompts?: string[];
  negatives?: string[];
  /** The seed (the one given, or a random one) and whether it was given. */
  seed: number;
  seedGiven: boolean;
  image?: RGBImage;
  mask?: RGBImage;
  loras: LoraArg[];
  tgate: TgateOptions | null;
  /** `--controlnet` for loadPipeline, and the control images and scales for generate. */
  controlLoad: Pick<LoadOptions, 'controlnet'>;
  control: ControlNetGenerateOptions;
}

const fail = (msg: string): never => { throw new Error(msg); };

function integer(flag: string, v: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= max)) {
    fail(`${flag} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in ${min}…${max}`}, got ${v}`);
  }
}

function finite(flag: string, v: number | undefined, ok: (x: number) => boolean, what: string): void {
  if (v !== undefined && !(Number.isFinite(v) && ok(v))) fail(`${flag} must be ${what}, got ${v}`);
}

/** A file the run reads later: it must exist now (URLs are the loader's to check). */
async function inputFile(flag: string, file: string): Promise<void> {
  if (isRemote(file)) return;
  const s = await stat(file).catch(() => null);
  if (!s) fail(`${flag} ${file}: no such file`);
  if (!s!.isFile()) fail(`${flag} ${file}: not a file`);
}

/** The output folder exists and is writable, and no output would replace a folder. */
async function checkOutputs(files: string[]): Promise<void> {
  const dir = path.dirname(path.resolve(files[0]));
  const s = await stat(dir).catch(() => null);
  if (!s?.isDirectory()) fail(`--output ${files[0]}: the folder ${dir} does not exist (create it first)`);
  await access(dir, constants.W_OK).catch(() => fail(`--output ${files[0]}: the folder ${dir} is not writable`));
  for (const f of files) if ((await stat(f).catch(() => null))?.isDirectory()) fail(`--output: ${f} is a folder; name a file`);
}

interface PipelineFacts { className: string; sizeMultiple: number }

/**
 * The pipeline's class and the multiple height and width must be (VAE scale × UNet downsampling, or × PixArt's
 * patch size), from its configs alone. null when they cannot be read: the loader then reports why.
 */
async function pipelineFacts(dir: string): Promise<PipelineFacts | null> {
  try {
    const className = String((await readModelIndex(dir))._class_name);
    const levels = (c: Record<string, unknown>) => (Array.isArray(c.block_out_channels) ? 2 ** (c.block_out_channels.length - 1) : NaN);
    const vae = levels(await readConfig(joinLocation(dir, 'vae')));
    const denoiser = className.startsWith('PixArt')
      ? Number((await readConfig(joinLocation(dir, 'transformer'))).patch_size ?? 1)
      : levels(await readConfig(joinLocation(dir, 'unet')));
    const sizeMultiple = vae * denoiser;
    return Number.isInteger(sizeMultiple) && sizeMultiple > 0 ? { className, sizeMultiple } : null;
  } catch {
    return null;
  }
}

function checkSizes(a: GenerateArgs, facts: PipelineFacts | null, image?: RGBImage): void {
  const m = facts?.sizeMultiple ?? 1;
  for (const flag of ['height', 'width'] as const) {
    const v = a[flag];
    if (v !== undefined && !(Number.isInteger(v) && v > 0 && v % m === 0)) fail(`--${flag} must be a positive multiple of ${m} for this model, got ${v}`);
  }
  if (!image) return;
  if ((a.height !== undefined && a.height !== image.height) || (a.width !== undefined && a.width !== image.width)) {
    fail(`--image ${a.image} is ${image.width}×${image.height} but --width ${a.width ?? image.width} --height ${a.height ?? image.height} was asked: resize the image (or omit --width/--height)`);
  }
  if (image.width % m || image.height % m) fail(`--image ${a.image} is ${image.width}×${image.height}: each side must be a multiple of ${m} for this model`);
}

/** Control images: a ControlNet to take them, and the output's size (nothing is resized; the first sets it). */
function checkControl(a: GenerateArgs, control: ControlNetGenerateOptions, facts: PipelineFacts | null, image?: RGBImage): void {
  const files = a['control-image'] ?? [];
  if (!files.length) return;
  if (!a.controlnet?.length && facts && !facts.className.includes('ControlNet')) {
    fail(`--control-image needs --controlnet DIR: ${facts.className} has no ControlNet of its own`);
  }
  const images = (Array.isArray(control.controlImage) ? control.controlImage : [control.controlImage]) as RGBImage[];
  const width = image?.width ?? a.width ?? images[0].width;
  const height = image?.height ?? a.height ?? images[0].height;
  images.forEach((c, k) => {
    if (c.width !== width || c.height !== height) {
      fail(`--control-image ${files[k]} is ${c.width}×${c.height} but the image generated is ${width}×${height}: resize it (nothing is resized here)`);
    }
  });
}

function checkTgate(a: GenerateArgs, run: number, stepsNote: string): TgateOptions | null {
  const gate = a['gate-step'];
  if (gate === undefined) return null;
  if (!/^(\d+|auto)$/.test(gate)) fail(`--gate-step must be a positive integer or "auto", got "${gate}"`);
  const tgate = {
    gateStep: gate === 'auto' ? 'auto' as const : Number(gate), autoThreshold: a['auto-threshold'],
    spInterval: a['sp-interval'], fiInterval: a['fi-interval'], warmUp: a['warm-up'], lcm: a.lcm,
  };
  try {
    resolveTgate(tgate, run);
  } catch (e) {
    fail(withFlagNames((e as Error).message) + stepsNote);
  }
  return tgate;
}

export async function checkGenerateArgs(a: GenerateArgs): Promise<GeneratePlan> {
  if (a.output === undefined) fail('--output is required (the PNG file to write)');
  const prompts = a.prompt;
  if (!prompts?.length && !a['prompt-embeds']) fail('give --prompt or --prompt-embeds');
  if (prompts?.length && a['prompt-embeds']) fail('give --prompt or --prompt-embeds, not both');
  const negatives = a['negative-prompt'];
  if (negatives && negatives.length !== 1 && prompts && negatives.length !== prompts.length) {
    fail(`--negative-prompt was given ${negatives.length} times for ${prompts.length} prompts: give one for all, or one per prompt`);
  }
  integer('--num-images', a['num-images'], 1);
  integer('--steps', a.steps, 1);
  integer('--seed', a.seed, 0, 0xffffffff);
  finite('--guidance', a.guidance, () => true, 'a number');
  finite('--guidance-rescale', a['guidance-rescale'], (x) => x >= 0 && x <= 1, 'in [0, 1]');
  finite('--eta', a.eta, (x) => x >= 0, 'a number ≥ 0');
  integer('--clip-skip', a['clip-skip'], 0);
  integer('--deepcache-interval', a['deepcache-interval'], 1);
  if (a.scheduler !== undefined && !SCHEDULER_LIST.some((s) => s.name === a.scheduler)) {
    fail(`--scheduler ${a.scheduler} is not a sampler this package has (see --list-schedulers): ${SCHEDULER_LIST.map((s) => s.name).join(', ')}`);
  }
  if (a.strength !== undefined && !a.image) fail('--strength needs --image (img2img or inpainting)');
  if (a.mask && !a.image) fail('--mask needs --image (the picture to inpaint)');
  if (a.image && a.latents) fail('--latents cannot be combined with --image: img2img draws its noise from --seed');
  finite('--strength', a.strength, (x) => x > 0 && x <= 1, 'in (0, 1]');

  const count = (prompts?.length ?? 1) * a['num-images'];
  if (a['output-type'] === 'latent' && a.grid) fail('--grid makes an image: it cannot be combined with --output-type latent');
  const files = a['output-type'] === 'latent' ? [a.output!] : outputFiles(a.output!, count, a.grid);
  await checkOutputs(files);
  for (const [flag, f] of [['--prompt-embeds', a['prompt-embeds']], ['--latents', a.latents]] as const) if (f) await inputFile(flag, f);
  const loras = (a.lora ?? []).map(parseLoraArg);
  for (const l of loras) await inputFile('--lora', l.source);

  const image = a.image ? await readPNG(a.image, '--image') : undefined;
  const mask = a.mask ? await readPNG(a.mask, '--mask') : undefined;
  if (image && mask && (mask.width !== image.width || mask.height !== image.height)) {
    fail(`--mask ${a.mask} is ${mask.width}×${mask.height} but --image ${a.image} is ${image.width}×${image.height}`);
  }
  const controlLoad = controlnetLoadOptions(a);
  for (const d of a.controlnet ?? []) {
    if (!isRemote(d) && !(await stat(d).catch(() => null))?.isDirectory()) fail(`--controlnet ${d}: no such folder (a ControlNet's diffusers or converted folder)`);
  }
  const control = await controlnetGenerateOptions(a, readPNG);
  const dir = a.dir ?? demoModelDir();
  const facts = await pipelineFacts(dir);
  checkSizes(a, facts, image);
  checkControl(a, control, facts, image);
  // The gate counts the steps that run: all of them, or img2img's share (the pipeline's default strength).
  let run = a.steps;
  let note = '';
  if (image && facts) {
    // The pipeline's own default, for the gate check before loading.
    const strength = a.strength ?? defaultStrength({
      sdxl: facts.className.startsWith('StableDiffusionXL'), inpaint: !!mask, control: control.controlImage !== undefined,
    });
    try {
      run = strengthSteps(a.steps, strength).run;
    } catch (e) {
      fail(withFlagNames((e as Error).message));
    }
    if (run < a.steps) note = ` (with --image, the gate counts the ${run} steps that run: --strength ${strength} of --steps ${a.steps})`;
  }
  const tgate = checkTgate(a, run, note);
  const seedGiven = a.seed !== undefined;
  const seed = a.seed ?? Math.floor(Math.random() * 2 ** 32);
  return { dir, prompts, negatives, seed, seedGiven, image, mask, loras, tgate, controlLoad, control };
}
