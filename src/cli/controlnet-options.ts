/**
 * The ControlNet flags of `tgate generate` and their mapping to `loadPipeline` / `generate` options:
 *
 *   --controlnet DIR --control-image edges.png [--control-scale 0.8] [--control-guidance-start 0 --control-guidance-end 1] [--guess-mode]
 *
 * `--controlnet` and `--control-image` repeat (one image per ControlNet, in order); `--control-scale`,
 * `--control-guidance-start` and `--control-guidance-end` take one value for every ControlNet or one per
 * ControlNet. Without `--controlnet`, `--control-image` feeds the ControlNet(s) of a StableDiffusionControlNetPipeline
 * folder. Errors name the flags.
 */
import type { RGBImage } from '../io/png.js';
import type { LoadOptions } from '../pipelines/load.js';
import { controlWindows, type ControlNetGenerateOptions } from '../pipelines/controlnet-step.js';

/** yargs options: `.options(controlnetOptions)`. */
export const controlnetOptions = {
  controlnet: { type: 'string', array: true, describe: 'ControlNet folder (diffusers or converted; path or URL), repeatable: their residuals are summed' },
  'control-image': { type: 'string', array: true, describe: 'PNG conditioning image at the output size, one per --controlnet (in order)' },
  'control-scale': { type: 'number', array: true, describe: 'ControlNet conditioning scale: one, or one per --controlnet (default 1; 0.8 with an init image)' },
  'control-guidance-start': { type: 'number', array: true, describe: 'fraction of the steps before a ControlNet applies (default 0): one, or one per --controlnet' },
  'control-guidance-end': { type: 'number', array: true, describe: 'fraction of the steps after which it stops (default 1): one, or one per --controlnet' },
  'guess-mode': { type: 'boolean', describe: 'ControlNet guess mode: it sees only the conditional half of the guidance batch' },
} as const;

/** The parsed ControlNet flags. */
export interface ControlNetArgs {
  controlnet?: string[];
  'control-image'?: string[];
  'control-scale'?: number[];
  'control-guidance-start'?: number[];
  'control-guidance-end'?: number[];
  'guess-mode'?: boolean;
}

/** Reads a PNG file given to `flag` (the CLI's reader: errors name the flag and the file). */
export type ReadImage = (file: string, flag: string) => Promise<RGBImage>;

/** `--controlnet` → loadPipeline's `controlnet` (nothing when absent). */
export function controlnetLoadOptions(a: ControlNetArgs): Pick<LoadOptions, 'controlnet'> {
  const dirs = a.controlnet;
  if (!dirs?.length) return {};
  if (dirs.some((d) => typeof d !== 'string' || !d)) throw new Error('--controlnet takes a folder (path or URL)');
  return { controlnet: dirs.length === 1 ? dirs[0] : dirs };
}

/** A repeatable number flag as one value or one per ControlNet. */
function perNet(flag: string, v: number[] | undefined, n: number | null): number | number[] | undefined {
  if (!v?.length) return undefined;
  const bad = v.find((x) => typeof x !== 'number' || !Number.isFinite(x));
  if (bad !== undefined) throw new Error(`--${flag} must be a number, got ${bad}`);
  if (v.length === 1) return v[0];
  if (n !== null && v.length !== n) throw new Error(`--${flag}: give one value, or one per --controlnet (${n}), got ${v.length}`);
  return v;
}

/** The ControlNet options of `generate` from the flags; images are read with `readImage`. */
export async function controlnetGenerateOptions(a: ControlNetArgs, readImage: ReadImage): Promise<ControlNetGenerateOptions> {
  const n = a.controlnet?.length ? a.controlnet.length : null;
  const files = a['control-image'] ?? [];
  const given = (['control-scale', 'control-guidance-start', 'control-guidance-end', 'guess-mode'] as const).filter((k) => a[k] !== undefined);
  if (!files.length) {
    if (n !== null) throw new Error(`--controlnet needs --control-image FILE (one per --controlnet: ${n})`);
    if (given.length) throw new Error(`--${given[0]} needs --control-image FILE (and --controlnet DIR unless the pipeline folder has a ControlNet)`);
    return {};
  }
  if (n !== null && files.length !== n) throw new Error(`--control-image: give one per --controlnet (${n}), got ${files.length}`);
  const images: RGBImage[] = [];
  for (const f of files) images.push(await readImage(f, '--control-image'));
  const o: ControlNetGenerateOptions = {
    // One ControlNet takes its image as it is (a list would be a batch); several take one each.
    controlImage: images.length === 1 ? images[0] : images,
    controlnetConditioningScale: perNet('control-scale', a['control-scale'], n ?? files.length),
    controlGuidanceStart: perNet('control-guidance-start', a['control-guidance-start'], n ?? files.length),
    controlGuidanceEnd: perNet('control-guidance-end', a['control-guidance-end'], n ?? files.length),
    guessMode: a['guess-mode'],
  };
  // The pipeline's own check, before loading (its option names become the flags' in the command's errors).
  controlWindows(o, files.length);
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as ControlNetGenerateOptions;
}
