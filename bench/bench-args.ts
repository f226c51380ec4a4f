/**
 * The benchmark's flags (`npm run bench`, and the job lines of bench/gpu.ts), parsed and checked before
 * anything is built.
 */
import type { BackendName } from '../src/backends/index.js';
import type { WeightDtype } from '../src/nn/packed-weight.js';
import { PAPER, type ModelKey } from './macs.js';

export interface BenchArgs {
  model: ModelKey; height: number; width: number; steps: number; gateStep: number;
  offload: boolean; reps: number; profile: boolean; seed: number; loops: number; random: boolean;
  /** --weight-dtype: float16 holds Linear/Conv2d/Embedding weights as packed halves (WebGPU). */
  weightDtype: WeightDtype;
  /** Untimed forwards per batch size before anything is timed (after the profiled one, when profiling). */
  warmup: number;
  /**
   * 'measured': run every step of both loops. 'per-kind': run each distinct step kind (batch and TGATE flags) of the
   * schedule twice, in schedule order so caches exist before they are reused, and sum the second timings over
   * the schedule. For runs where full loops do not fit the time available (SDXL/PixArt at 1024² on one GPU call).
   */
  loopMode: 'measured' | 'per-kind';
  /**
   * TGATE as in the paper's tables (T-GATE v1): cross-attention cached from the gate on, self-attention never
   * reused (warm-up = steps). Default: T-GATE's README settings (self-attention caching as well).
   */
  v1: boolean;
  /** A ControlNet (`ControlNetModel.from_unet` of the UNet) runs before the UNet at every step, gated by TGATE too. */
  controlnet: boolean;
  /**
   * --wait-idle S: before each timed forward and loop, wait up to S seconds until other processes use under
   * 0.1 core (Linux; 0: do not wait). For shared machines, where another job's CPU shows up as our wall time.
   */
  waitIdle: number;
}

/** Parses the CLI flags (`npm run bench`, and the job lines of bench/gpu.ts). */
export function parseArgs(argv: string[]): BenchArgs & { backend: BackendName; json: boolean; threads?: number } {
  const get = (k: string): string | undefined => { const i = argv.indexOf(`--${k}`); return i >= 0 ? argv[i + 1] : undefined; };
  const model = (get('model') ?? 'sd15') as ModelKey;
  if (!(model in PAPER)) throw new Error(`--model must be one of ${Object.keys(PAPER).join(', ')}, got ${model}`);
  const size = PAPER[model].size;
  const a = {
    model,
    height: Number(get('height') ?? size), width: Number(get('width') ?? size),
    steps: Number(get('steps') ?? 25), gateStep: Number(get('gate-step') ?? PAPER[model].tgate.gateStep),
    backend: (get('backend') ?? 'wasm') as BackendName,
    json: argv.includes('--json'), offload: argv.includes('--offload'), profile: !argv.includes('--no-profile'),
    reps: Number(get('reps') ?? 2), seed: Number(get('seed') ?? 0), warmup: Number(get('warmup') ?? (argv.includes('--no-profile') ? 1 : 0)),
    loops: Math.max(1, Number(get('loops') ?? 1)), random: argv.includes('--random'),
    loopMode: argv.includes('--per-kind') ? 'per-kind' as const : 'measured' as const, v1: argv.includes('--tgate-v1'), controlnet: argv.includes('--controlnet'),
    threads: get('threads') === undefined ? undefined : Number(get('threads')),
    weightDtype: (get('weight-dtype') ?? 'float32') as WeightDtype,
    waitIdle: Number(get('wait-idle') ?? 0),
  };
  if (!(a.waitIdle >= 0)) throw new Error(`--wait-idle must be a number of seconds ≥ 0, got ${get('wait-idle')}`);
  if (a.weightDtype !== 'float32' && a.weightDtype !== 'float16') throw new Error(`--weight-dtype must be float32 or float16, got ${a.weightDtype}`);
  if (a.controlnet && model === 'pixart') throw new Error('--controlnet needs a UNet model (sd15, sd21, sdxl, tiny-shapes)');
  if (a.controlnet && a.offload) throw new Error('--controlnet cannot be combined with --offload');
  // Latents must survive every 2× downsampling: SD 3 times (×8 VAE), SDXL twice, PixArt patch 2, tiny-shapes twice (×4 VAE).
  const mult = model === 'pixart' ? 16 : (model === 'sdxl' ? 32 : (model === 'tiny-shapes' ? 16 : 64));
  if (a.height % mult || a.width % mult) throw new Error(`--height/--width must be multiples of ${mult} for ${model}`);
  return a;
}
