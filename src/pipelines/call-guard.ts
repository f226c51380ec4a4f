/**
 * How one generate() call ends early: stopped by its AbortSignal, or out of backend memory. `runGeneration`
 * (session.ts) applies both around the one generation path, so every pipeline and mode behaves the same.
 */
import { WasmHeapError } from '../backends/index.js';
import { abortError, throwIfAborted } from '../io/http-fetch.js';
import type { GenerationProgress } from './denoise.js';

/** What a call reports progress to and may be stopped by (a subset of GenerateOptionsBase). */
interface Stoppable {
  signal?: AbortSignal;
  onProgress?: (p: GenerationProgress) => void | Promise<void>;
}

const DONE: Record<GenerationProgress['phase'], string> = { denoise: 'steps', decode: 'images decoded' };

/**
 * `o` with its signal checked at every progress point, before and after the caller's `onProgress`. The
 * progress points are exactly where a run can stop cleanly: after each denoising step, before the VAE decode
 * and after each decoded image, in every mode; a check there reaches them all without a second set of hooks.
 * The AbortError thrown there unwinds through the loop's and the session's clean-up like any other error.
 */
export function stopAtProgress<T extends Stoppable>(o: T): T {
  const { signal, onProgress } = o;
  if (!signal) return o;
  const check = (p: GenerationProgress): void => throwIfAborted(signal, `generate (${p.completed} of ${p.total} ${DONE[p.phase]})`);
  return {
    ...o,
    onProgress: async (p: GenerationProgress) => {
      check(p);
      await onProgress?.(p);
      check(p);
    },
  };
}

/** The AbortError of a call stopped before it started (aborted already, or while queued). */
export const abortedBeforeStart = (signal: AbortSignal | undefined, queued: boolean): Error =>
  abortError(queued ? 'generate (waiting for another call on this model)' : 'generate', signal?.reason);

/** What a generation makes: `images` images of `width`×`height`. */
export interface GenerationSize {
  images: number;
  height: number;
  width: number;
}

/**
 * A wasm heap error raised during a generation, restated with the options that size it: the weights were
 * loaded, so it is the activations that do not fit, and offload (which helps weights) is not the remedy.
 * Anything else is returned unchanged.
 */
export function generationMemoryError(e: unknown, s: GenerationSize): unknown {
  if (!(e instanceof WasmHeapError)) return e;
  const fewer = s.images > 1 ? ' or fewer images (numImagesPerPrompt / --num-images, or fewer prompts)' : '';
  return new WasmHeapError(e.requestedBytes, e.heapBytes, {
    during: `while generating ${s.images} image${s.images > 1 ? 's' : ''} of ${s.width}×${s.height}`,
    remedy: `Lower height and width (--height, --width)${fewer}, or use another backend.`,
  });
}
