/**
 * The tiny-shapes evaluator (assets/tiny-shapes/README.md, section 2): reads colour, shape, position and size of
 * the single shape in a 64x64 RGB image with fixed rules (no learning). Pure TypeScript on raw uint8 pixels so it
 * runs anywhere, without a TF.js backend. The rules, thresholds and tie-breaks follow the README exactly: the
 * per-image outputs must match the Python evaluator's recorded outputs bit for bit.
 */

/** Shape colours in palette order (the order is the tie-break order). */
export const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'] as const;
/** Shape kinds in the dataset order. */
export const SHAPES = ['circle', 'square', 'triangle'] as const;
/** Position classes in the dataset order. */
export const POSITIONS = ['left', 'right', 'top', 'bottom', 'center'] as const;
/** Size classes in the dataset order. */
export const SIZES = ['small', 'large'] as const;

export type ShapeColour = (typeof COLOURS)[number];
export type ShapeKind = (typeof SHAPES)[number];
export type ShapePosition = (typeof POSITIONS)[number];
export type ShapeSize = (typeof SIZES)[number];

/** Dataset palette (RGB), indexed like {@link COLOURS}. */
export const PALETTE: Readonly<Record<ShapeColour, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [235, 205, 35],
  purple: [140, 60, 180],
  orange: [245, 140, 30],
};

/** Image side the evaluator is defined for. */
export const EVAL_SIZE = 64;

/** Thresholds of the README evaluator. */
const FG_THRESHOLD = 60.0;
const MIN_PIXELS = 12;
const SQUARE_FILL = 0.9;
const CIRCLE_FILL = 0.695;
const CENTER_RADIUS = 8.0;
const LARGE_EXTENT = 17;

/** What the evaluator reads from one image; "none" when the shape could not be found. */
export interface ShapePrediction {
  colour: ShapeColour | 'none';
  shape: ShapeKind | 'none';
  position: ShapePosition | 'none';
  size: ShapeSize | 'none';
}

/** {@link ShapePrediction} plus the measurements behind it (for reports and debugging). */
export interface ShapeEvaluation extends ShapePrediction {
  /** Per-channel background estimate (median of the 2-pixel border frame). */
  background: [number, number, number];
  /** Number of foreground pixels. */
  foregroundPixels: number;
  /** Pixels in the largest 4-connected foreground component (0 when there is no foreground). */
  componentPixels: number;
  /** n / (w*h) of the component's bounding box; NaN when shape is "none". */
  fill: number;
  /** Component bounding box [xmin, ymin, xmax, ymax] (inclusive pixel indices); null when shape is "none". */
  bbox: [number, number, number, number] | null;
  /** Component centroid (cx, cy) in continuous pixel coordinates; null when shape is "none". */
  centroid: [number, number] | null;
}

/** Options of {@link evaluateShapeImage}. */
export interface EvaluateOptions {
  /** Interleaved channels per pixel of `pixels`: 3 (RGB) or 4 (RGBA, alpha ignored). Default 3. */
  channels?: 3 | 4;
}

function median(values: number[]): number {
  values.sort((a, b) => a - b);
  const n = values.length;
  const mid = n >> 1;
  return n % 2 === 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

/** Border frame: rows 0-1 and 62-63 in full, columns 0-1 and 62-63 of rows 2..61 (496 pixels). */
function borderBackground(px: ArrayLike<number>, ch: number): [number, number, number] {
  const s = EVAL_SIZE;
  const bg: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    const v: number[] = [];
    for (let y = 0; y < s; y++) {
      const fullRow = y < 2 || y >= s - 2;
      for (let x = 0; x < s; x++) {
        if (fullRow || x < 2 || x >= s - 2) v.push(px[(y * s + x) * ch + c]);
      }
    }
    bg[c] = median(v);
  }
  return bg;
}

/** Nearest palette entry by squared RGB distance; strict `<` keeps the lower index on ties. */
function nearestColour(r: number, g: number, b: number): number {
  let best = 0;
  let bestD = Infinity;
  for (let i = 0; i < COLOURS.length; i++) {
    const p = PALETTE[COLOURS[i]];
    const d = (r - p[0]) ** 2 + (g - p[1]) ** 2 + (b - p[2]) ** 2;
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

/** Largest 4-connected component of `mask`; ties keep the component met first in row-major scan order. */
function largestComponent(mask: Uint8Array): number[] {
  const s = EVAL_SIZE;
  const seen = new Uint8Array(mask.length);
  let best: number[] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || seen[start]) continue;
    const comp: number[] = [];
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const i = stack.pop()!;
      comp.push(i);
      const x = i % s;
      const y = (i - x) / s;
      const nbrs = [x > 0 ? i - 1 : -1, x < s - 1 ? i + 1 : -1, y > 0 ? i - s : -1, y < s - 1 ? i + s : -1];
      for (const j of nbrs) {
        if (j >= 0 && mask[j] && !seen[j]) {
          seen[j] = 1;
          stack.push(j);
        }
      }
    }
    if (comp.length > best.length) best = comp;
  }
  return best;
}

/**
 * Runs the README evaluator on one image.
 * @param pixels 64x64 image, row-major, interleaved uint8 channels (a pipeline output as `round(x*255)` of [0,1]).
 * @returns the predicted attributes and the measurements they come from.
 */
export function evaluateShapeImage(pixels: ArrayLike<number>, opts: EvaluateOptions = {}): ShapeEvaluation {
  const ch = opts.channels ?? 3;
  const n = EVAL_SIZE * EVAL_SIZE;
  if (ch !== 3 && ch !== 4) throw new Error(`evaluateShapeImage: channels must be 3 or 4, got ${String(ch)}`);
  if (pixels.length !== n * ch) {
    throw new Error(`evaluateShapeImage: expected a ${EVAL_SIZE}x${EVAL_SIZE}x${ch} image (${n * ch} values), got ${pixels.length}`);
  }
  const bg = borderBackground(pixels, ch);
  const mask = new Uint8Array(n);
  const votes = new Array<number>(COLOURS.length).fill(0);
  let fgCount = 0;
  for (let i = 0; i < n; i++) {
    const r = pixels[i * ch];
    const g = pixels[i * ch + 1];
    const b = pixels[i * ch + 2];
    const dev = Math.max(Math.abs(r - bg[0]), Math.abs(g - bg[1]), Math.abs(b - bg[2]));
    if (dev > FG_THRESHOLD) {
      mask[i] = 1;
      fgCount++;
      votes[nearestColour(r, g, b)]++;
    }
  }
  const result: ShapeEvaluation = {
    colour: 'none', shape: 'none', position: 'none', size: 'none',
    background: bg, foregroundPixels: fgCount, componentPixels: 0, fill: NaN, bbox: null, centroid: null,
  };
  if (fgCount < MIN_PIXELS) return result;

  let winner = 0;
  for (let i = 1; i < votes.length; i++) if (votes[i] > votes[winner]) winner = i;
  result.colour = COLOURS[winner];

  const comp = largestComponent(mask);
  result.componentPixels = comp.length;
  if (comp.length < MIN_PIXELS) return result;

  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity, sx = 0, sy = 0;
  for (const i of comp) {
    const x = i % EVAL_SIZE;
    const y = (i - x) / EVAL_SIZE;
    xmin = Math.min(xmin, x); xmax = Math.max(xmax, x);
    ymin = Math.min(ymin, y); ymax = Math.max(ymax, y);
    sx += x; sy += y;
  }
  const w = xmax - xmin + 1;
  const h = ymax - ymin + 1;
  const fill = comp.length / (w * h);
  result.fill = fill;
  result.bbox = [xmin, ymin, xmax, ymax];
  result.shape = fill >= SQUARE_FILL ? 'square' : fill >= CIRCLE_FILL ? 'circle' : 'triangle';

  const cx = sx / comp.length + 0.5;
  const cy = sy / comp.length + 0.5;
  result.centroid = [cx, cy];
  const dx = cx - EVAL_SIZE / 2;
  const dy = cy - EVAL_SIZE / 2;
  if (Math.max(Math.abs(dx), Math.abs(dy)) < CENTER_RADIUS) result.position = 'center';
  else if (Math.abs(dx) >= Math.abs(dy)) result.position = dx < 0 ? 'left' : 'right';
  else result.position = dy < 0 ? 'top' : 'bottom';

  result.size = Math.max(w, h) >= LARGE_EXTENT ? 'large' : 'small';
  return result;
}
