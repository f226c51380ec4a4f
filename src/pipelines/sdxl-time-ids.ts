/**
 * SDXL's micro-conditioning `add_time_ids` (original size, crop top-left, target size) per batch row, laid out
 * exactly as diffusers v0.30.3 does, quirks included:
 * - text-to-image repeats the pair [negative, positive] once per image, so with several images the guidance rows
 *   (which are [negatives…, positives…]) get alternating ids: with differing negative sizes rows swap;
 *   T-GATE copies this and after the gate feeds the negative ids to every row;
 * - text-to-image uses the negative sizes only when both negativeOriginalSize and negativeTargetSize are given;
 * - img2img repeats each half on its own ([negatives…, positives…], no swap), each negative size defaulting to the
 *   positive one, and its negative ids take the positive crop (negativeCropsCoordsTopLeft is unused there).
 * Options diffusers would ignore are rejected instead.
 */
import * as tf from '@tensorflow/tfjs-core';

type Pair = [number, number];

export interface SDXLSizeOptions {
  /** Defaults to [height, width]. */
  originalSize?: Pair;
  /** Defaults to [0, 0]. */
  cropsCoordsTopLeft?: Pair;
  /** Defaults to [height, width]. */
  targetSize?: Pair;
  negativeOriginalSize?: Pair;
  negativeCropsCoordsTopLeft?: Pair;
  negativeTargetSize?: Pair;
}

export const TIME_ID_OPTION_KEYS = Object.keys({
  originalSize: 1, cropsCoordsTopLeft: 1, targetSize: 1, negativeOriginalSize: 1, negativeCropsCoordsTopLeft: 1, negativeTargetSize: 1,
} satisfies Record<keyof SDXLSizeOptions, 1>);

function pair(o: SDXLSizeOptions, k: keyof SDXLSizeOptions): Pair | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new Error(`${k} must be a pair of numbers [height, width] (or [top, left]), got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Which conditioning a denoiser call gets (as `Branch` in denoise.ts). */
type Rows = 'cfg' | 'uncond' | 'cond';

/** Checks the size options and returns the time-id rows of each branch for a batch of `m` images. */
export function sdxlTimeIds(o: SDXLSizeOptions, height: number, width: number, img2img: boolean): { rows(m: number, branch: Rows): tf.Tensor2D } {
  const orig = pair(o, 'originalSize') ?? [height, width];
  const crop = pair(o, 'cropsCoordsTopLeft') ?? [0, 0];
  const target = pair(o, 'targetSize') ?? [height, width];
  const nOrig = pair(o, 'negativeOriginalSize');
  const nCrop = pair(o, 'negativeCropsCoordsTopLeft');
  const nTarget = pair(o, 'negativeTargetSize');
  const pos = [...orig, ...crop, ...target];
  let neg = pos;
  if (img2img) {
    if (nCrop) throw new Error('negativeCropsCoordsTopLeft has no effect in SDXL img2img (diffusers 0.30.3 uses cropsCoordsTopLeft for the negative ids too): drop it');
    neg = [...(nOrig ?? orig), ...crop, ...(nTarget ?? target)];
  } else if (nOrig || nCrop || nTarget) {
    if (!nOrig || !nTarget) throw new Error('SDXL text-to-image uses negative size conditioning only with both negativeOriginalSize and negativeTargetSize (diffusers ignores one alone): give both');
    neg = [...nOrig, ...(nCrop ?? [0, 0]), ...nTarget];
  }
  const table = (rows: number[][]) => tf.tensor2d(rows, [rows.length, 6]);
  return {
    rows(m, branch) {
      if (branch === 'cond') return table(new Array(m).fill(pos));
      if (branch === 'uncond') return table(new Array(m).fill(neg));
      if (img2img) return table([...new Array(m).fill(neg), ...new Array(m).fill(pos)]);
      return table(Array.from({ length: 2 * m }, (_, r) => (r % 2 === 0 ? neg : pos)));
    },
  };
}
