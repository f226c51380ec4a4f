/**
 * The tiny-shapes dataset renderer (assets/tiny-shapes/README.md, section 1) with our own seeded RNG: same
 * distribution as the training data, not numpy's bit stream (the README says the distribution is all a
 * reimplementation needs; the evaluator is what must be exact).
 */
import {
  COLOURS, PALETTE, POSITIONS, SHAPES, SIZES,
  type ShapeColour, type ShapeKind, type ShapePosition, type ShapeSize,
} from '../../src/eval/index.js';
import { formatCaption, type CaptionVariant } from '../../src/eval/index.js';

/** Small seeded RNG (mulberry32 + Box-Muller). */
export class Rng {
  private s: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Integer uniform in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const m = Math.sqrt(-2 * Math.log(u));
    this.spare = m * Math.sin(2 * Math.PI * v);
    return m * Math.cos(2 * Math.PI * v);
  }
}

/** One rendered training-style sample. */
export interface ShapeSample {
  /** 64x64x3 uint8, row-major RGB. */
  pixels: Uint8Array;
  colour: ShapeColour;
  shape: ShapeKind;
  position: ShapePosition;
  size: ShapeSize;
  caption: string;
  variant: CaptionVariant;
}

const SIDE = 64;
const SS = 4; // supersampling factor per axis
const NOMINAL: Record<ShapePosition, [number, number]> = {
  left: [16, 32], right: [48, 32], top: [32, 16], bottom: [32, 48], center: [32, 32],
};

/** Whether point (x, y) lies inside the shape of half-extent r centred at (cx, cy). */
function inside(shape: ShapeKind, x: number, y: number, cx: number, cy: number, r: number): boolean {
  const dx = x - cx;
  const dy = y - cy;
  if (shape === 'circle') return dx * dx + dy * dy <= r * r;
  if (shape === 'square') return Math.abs(dx) <= 0.9 * r && Math.abs(dy) <= 0.9 * r;
  // Upward isosceles triangle: apex (cx, cy-r), base from (cx-r, cy+r) to (cx+r, cy+r); half-width grows by 1/2 per pixel.
  return dy >= -r && dy <= r && Math.abs(dx) <= (dy + r) / 2;
}

/** Renders one sample; draws follow the README's order (shape, colour, position, size, then the continuous ones). */
export function renderSample(rng: Rng): ShapeSample {
  const shape = SHAPES[rng.int(0, SHAPES.length - 1)];
  const colour = COLOURS[rng.int(0, COLOURS.length - 1)];
  const position = POSITIONS[rng.int(0, POSITIONS.length - 1)];
  const size = SIZES[rng.int(0, SIZES.length - 1)];
  const level = rng.uniform(228, 248);
  const bg = [0, 1, 2].map(() => level + rng.uniform(-4, 4));
  const fg = PALETTE[colour].map((v) => v + rng.int(-12, 12));
  const cx = NOMINAL[position][0] + rng.uniform(-2.5, 2.5);
  const cy = NOMINAL[position][1] + rng.uniform(-2.5, 2.5);
  const r = size === 'small' ? rng.uniform(6.0, 7.5) : rng.uniform(10.5, 12.0);

  const pixels = new Uint8Array(SIDE * SIDE * 3);
  for (let py = 0; py < SIDE; py++) {
    for (let px = 0; px < SIDE; px++) {
      let hits = 0;
      // Every shape lies inside its 2r x 2r box, so pixels clear of it have zero coverage.
      const near = px + 1 >= cx - r && px <= cx + r && py + 1 >= cy - r && py <= cy + r;
      // Sample points are the pixel centres of the 256x256 grid.
      for (let sy = 0; near && sy < SS; sy++) {
        for (let sx = 0; sx < SS; sx++) {
          if (inside(shape, px + (sx + 0.5) / SS, py + (sy + 0.5) / SS, cx, cy, r)) hits++;
        }
      }
      const cov = hits / (SS * SS);
      for (let c = 0; c < 3; c++) {
        const v = bg[c] * (1 - cov) + fg[c] * cov + 1.5 * rng.normal();
        pixels[(py * SIDE + px) * 3 + c] = Math.min(255, Math.max(0, Math.round(v)));
      }
    }
  }
  const u = rng.next();
  const variant: CaptionVariant = u < 0.6 ? 'full' : u < 0.75 ? 'no_size' : u < 0.85 ? 'no_position' : 'short';
  return { pixels, colour, shape, position, size, caption: formatCaption({ colour, shape, position, size }, variant), variant };
}

/** Renders `count` samples from one seed. */
export function renderDataset(seed: number, count: number): ShapeSample[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => renderSample(rng));
}
