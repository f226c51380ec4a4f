/**
 * The tiny-shapes caption grammar (assets/tiny-shapes/README.md, section 1) and the accuracy scorer of section 5.
 * Captions are lower case with single spaces:
 *   full      `a {size} {colour} {shape} {position phrase}`
 *   no size   `a {colour} {shape} {position phrase}`
 *   no pos.   `a {size} {colour} {shape}`
 *   short     `a {colour} {shape}`
 * and `""` (the unconditional caption used for classifier-free guidance).
 */
import {
  COLOURS, POSITIONS, SHAPES, SIZES,
  type ShapeColour, type ShapeKind, type ShapePosition, type ShapePrediction, type ShapeSize,
} from './shapes-evaluator.js';

/** Caption variants of the grammar; "empty" is the unconditional `""`. */
export type CaptionVariant = 'full' | 'no_size' | 'no_position' | 'short' | 'empty';

/** Attributes a caption mentions (unmentioned ones are absent: they are random in the data). */
export interface ShapeCaption {
  variant: CaptionVariant;
  colour?: ShapeColour;
  shape?: ShapeKind;
  position?: ShapePosition;
  size?: ShapeSize;
}

/** The position phrase for each position class. */
export const POSITION_PHRASES: Readonly<Record<ShapePosition, string>> = {
  left: 'on the left',
  right: 'on the right',
  top: 'at the top',
  bottom: 'at the bottom',
  center: 'in the center',
};

function member<T extends string>(list: readonly T[], word: string | undefined): T | undefined {
  return word !== undefined && (list as readonly string[]).includes(word) ? (word as T) : undefined;
}

/** Parses a caption; returns null when it is not a sentence of the grammar. */
export function tryParseCaption(caption: string): ShapeCaption | null {
  if (caption === '') return { variant: 'empty' };
  const words = caption.split(' ');
  if (words[0] !== 'a') return null;
  let k = 1;
  const size = member(SIZES, words[k]);
  if (size) k++;
  const colour = member(COLOURS, words[k++]);
  const shape = member(SHAPES, words[k++]);
  if (!colour || !shape) return null;
  const rest = words.slice(k).join(' ');
  if (words.length === k) {
    return size ? { variant: 'no_position', size, colour, shape } : { variant: 'short', colour, shape };
  }
  const position = POSITIONS.find((p) => POSITION_PHRASES[p] === rest);
  if (!position || words.length !== k + 3) return null;
  return size ? { variant: 'full', size, colour, shape, position } : { variant: 'no_size', colour, shape, position };
}

/** Parses a caption of the grammar; throws on anything else. */
export function parseCaption(caption: string): ShapeCaption {
  const parsed = tryParseCaption(caption);
  if (!parsed) throw new Error(`parseCaption: "${caption}" is not a tiny-shapes caption (see assets/tiny-shapes/README.md)`);
  return parsed;
}

/** Writes the caption of the given variant (the inverse of {@link parseCaption}). */
export function formatCaption(
  a: { colour: ShapeColour; shape: ShapeKind; position: ShapePosition; size: ShapeSize },
  variant: CaptionVariant = 'full',
): string {
  switch (variant) {
    case 'full': return `a ${a.size} ${a.colour} ${a.shape} ${POSITION_PHRASES[a.position]}`;
    case 'no_size': return `a ${a.colour} ${a.shape} ${POSITION_PHRASES[a.position]}`;
    case 'no_position': return `a ${a.size} ${a.colour} ${a.shape}`;
    case 'short': return `a ${a.colour} ${a.shape}`;
    case 'empty': return '';
  }
}

/**
 * Prompt i (0..47) of the README's evaluation set: full caption of shape SHAPES[i%3], colour COLOURS[(i//3)%6],
 * position POSITIONS[i%5], size SIZES[(i//5)%2]; its seeds are 1000+2i and 1001+2i.
 */
export function evalPrompt(i: number): string {
  return formatCaption({
    shape: SHAPES[i % 3],
    colour: COLOURS[Math.floor(i / 3) % 6],
    position: POSITIONS[i % 5],
    size: SIZES[Math.floor(i / 5) % 2],
  });
}

/** Number of prompts in the README's evaluation set. */
export const EVAL_PROMPT_COUNT = 48;

/** Per-attribute agreement of one prediction with its caption; null for attributes the caption does not mention. */
export interface ShapeScore {
  colour: boolean | null;
  shape: boolean | null;
  position: boolean | null;
  size: boolean | null;
  /** colour, shape and position all correct (among those mentioned); null when none of them is mentioned. */
  all3: boolean | null;
}

/** Scores one evaluator prediction against the caption it was generated from. */
export function scorePrediction(caption: ShapeCaption | string, pred: ShapePrediction): ShapeScore {
  const c = typeof caption === 'string' ? parseCaption(caption) : caption;
  const agree = <T>(want: T | undefined, got: string): boolean | null => (want === undefined ? null : want === got);
  const colour = agree(c.colour, pred.colour);
  const shape = agree(c.shape, pred.shape);
  const position = agree(c.position, pred.position);
  const size = agree(c.size, pred.size);
  const three = [colour, shape, position].filter((v): v is boolean => v !== null);
  return { colour, shape, position, size, all3: three.length === 0 ? null : three.every(Boolean) };
}

/** Accuracies over a set of images: the fraction correct among images whose caption mentions the attribute (NaN if none). */
export interface ShapeAccuracy {
  colour: number;
  shape: number;
  position: number;
  size: number;
  all3: number;
  /** Number of images scored. */
  count: number;
}

/** Aggregates {@link scorePrediction} over (caption, prediction) pairs, as in the README's evaluation table. */
export function scoreBatch(items: ReadonlyArray<{ caption: ShapeCaption | string; pred: ShapePrediction }>): ShapeAccuracy {
  const keys = ['colour', 'shape', 'position', 'size', 'all3'] as const;
  const hit = { colour: 0, shape: 0, position: 0, size: 0, all3: 0 };
  const tot = { colour: 0, shape: 0, position: 0, size: 0, all3: 0 };
  for (const { caption, pred } of items) {
    const s = scorePrediction(caption, pred);
    for (const k of keys) {
      if (s[k] === null) continue;
      tot[k]++;
      if (s[k]) hit[k]++;
    }
  }
  const frac = (k: (typeof keys)[number]): number => (tot[k] === 0 ? NaN : hit[k] / tot[k]);
  return {
    colour: frac('colour'), shape: frac('shape'), position: frac('position'), size: frac('size'), all3: frac('all3'),
    count: items.length,
  };
}
