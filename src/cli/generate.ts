/**
 * `tgate generate [pipeline_dir] --prompt "…" --output out.png`: text-to-image, img2img and inpainting, with
 * optional TGATE, DeepCache, LoRAs and ControlNets. Every flag is checked before the model loads (generate-checks.ts).
 */
import type { CommandModule } from 'yargs';
import * as tf from '@tensorflow/tfjs-core';
import { loadPipeline, type Pipeline } from '../pipelines/load.js';
import { SCHEDULER_LIST, schedulerFromConfig } from '../samplers/index.js';
import { encodePNG, type RGBImage } from '../io/png.js';
import type { SDXLGenerateOptions } from '../pipelines/stable-diffusion-xl.js';
import { setupBackend } from './options.js';
import { readTensors, writeFileAtomic, writeTensors } from './files.js';
import { progressBar } from './progress.js';
import { generateOptions, type GenerateArgs } from './generate-options.js';
import { checkGenerateArgs, type GeneratePlan } from './generate-checks.js';
import { EMBED_NAMES, withFlagNames } from './flags.js';
import { contactSheet, outputFiles } from './outputs.js';

type Options = SDXLGenerateOptions & Record<string, unknown>;

/** `--list-schedulers`: the names `--scheduler` takes, each with a line on what it is. */
function listSchedulers(): void {
  const w = Math.max(...SCHEDULER_LIST.map((s) => s.name.length));
  for (const s of SCHEDULER_LIST) console.log(`${s.name.padEnd(w)}  ${s.description}`);
}

/** The generate() options the flags and the checked inputs give (tensors read from files go to `owned`). */
async function generateCall(a: GenerateArgs, plan: GeneratePlan, owned: tf.Tensor[]): Promise<Options> {
  const opts: Options = {
    prompt: plan.prompts, negativePrompt: plan.negatives, numImagesPerPrompt: a['num-images'], numInferenceSteps: a.steps,
    guidanceScale: a.guidance, guidanceRescale: a['guidance-rescale'], eta: a.eta, clipSkip: a['clip-skip'], seed: plan.seed,
    height: a.height, width: a.width, image: plan.image, strength: a.strength, maskImage: plan.mask, outputType: a['output-type'],
    tgate: plan.tgate, deepcache: a['deepcache-interval'] ? { cacheInterval: a['deepcache-interval'] } : null,
    ...plan.control,
  };
  for (const [flag, file] of [['--prompt-embeds', a['prompt-embeds']], ['--latents', a.latents]] as const) {
    if (!file) continue;
    const t = await readTensors(file);
    owned.push(...Object.values(t));
    const names = flag === '--latents' ? { latents: 'latents' } : EMBED_NAMES;
    for (const [k, v] of Object.entries(t)) {
      if (!(k in names)) throw new Error(`${flag} ${file}: unexpected tensor "${k}" (expected: ${Object.keys(names).join(', ')})`);
      opts[names[k as keyof typeof names]] = v;
    }
    const required = flag === '--latents' ? 'latents' : 'prompt_embeds';
    if (!t[required]) throw new Error(`${flag} ${file} has no tensor named "${required}"`);
  }
  return opts;
}

/** Swaps the sampler and loads (and by default fuses) the LoRAs. */
async function preparePipeline(pipe: Pipeline, a: GenerateArgs, plan: GeneratePlan): Promise<void> {
  if (a.scheduler) {
    const next = schedulerFromConfig(pipe.scheduler.config, a.scheduler);
    pipe.scheduler.dispose();
    pipe.scheduler = next;
  }
  for (const l of plan.loras) {
    const info = await pipe.loadLora(l.source, { scale: l.scale });
    console.error(`LoRA ${l.source} at scale ${l.scale}: ${Object.entries(info.modules).map(([c, n]) => `${n} ${c} layers`).join(', ')}`);
  }
  if (plan.loras.length && a['fuse-lora']) await pipe.fuseLora();
}

async function run(a: GenerateArgs): Promise<void> {
  const plan = await checkGenerateArgs(a);
  await setupBackend(a.backend, a.threads);
  const bar = progressBar('loading');
  const pipe = await loadPipeline(plan.dir, {
    variant: a.variant, offload: a.offload, weightDtype: a['weight-dtype'], onProgress: (name, i, n) => bar(i + 1, n, name),
    ...plan.controlLoad,
  });
  const owned: tf.Tensor[] = [];
  try {
    await preparePipeline(pipe, a, plan);
    const opts = await generateCall(a, plan, owned);
    if (!plan.seedGiven) console.error(`seed ${plan.seed} (pass --seed ${plan.seed} to repeat)`);
    const bars = { denoise: progressBar('denoising'), decode: progressBar('decoding') };
    let gateUsed: number | null | undefined;
    opts.onStep = async (s) => {
      await s.latents.data(); // the bar then moves with the work, not with the queueing of async backends
      gateUsed = s.gateStep;
    };
    opts.onProgress = (p) => bars[p.phase](p.completed, p.total);
    const t0 = Date.now();
    const { latents, images } = await pipe.generate(opts);
    const secs = ((Date.now() - t0) / 1000).toFixed(2);
    let files: string[];
    try {
      files = await writeOutputs(a, latents, images);
    } finally {
      latents.dispose();
    }
    const gate = a['gate-step'];
    const gateNote = gate === undefined ? '' : `, TGATE gate ${gateUsed ?? 'never closed'}${gate === 'auto' ? ' (auto)' : ''}`;
    console.log(`wrote ${files.join(', ')} (${secs} s${gateNote})`);
  } finally {
    owned.forEach((t) => t.dispose());
    pipe.dispose();
  }
}

/** Writes the latents or the images (outputs.ts says where; the batch may come from --prompt-embeds' rows). */
async function writeOutputs(a: GenerateArgs, latents: tf.Tensor, images: RGBImage[]): Promise<string[]> {
  if (a['output-type'] === 'latent') {
    await writeTensors(a.output!, { latents });
    return [a.output!];
  }
  const files = outputFiles(a.output!, images.length, a.grid);
  if (a.grid) {
    const cols = a['num-images'];
    await writeFileAtomic(files[0], await encodePNG(contactSheet(images, images.length / cols, cols)));
  } else {
    for (const [i, file] of files.entries()) await writeFileAtomic(file, await encodePNG(images[i]));
  }
  return files;
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate [dir]',
  describe: 'Generate images (default model: the bundled tiny-shapes demo)',
  builder: (y) => generateOptions(y) as never,
  handler: async (a) => {
    if (a['list-schedulers']) return listSchedulers();
    try {
      await run(a);
    } catch (e) {
      const err = e as Error;
      // The library names its options (numInferenceSteps); the user typed flags (--steps).
      if (err.name === 'AbortError') throw err;
      err.message = withFlagNames(err.message);
      throw err;
    }
  },
};
