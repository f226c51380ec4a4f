/** Evaluation: the relative L2 error, and the quality evaluator of the tiny-shapes demo model (assets/tiny-shapes/README.md). */
export { relL2 } from './rel-l2.js';
export {
  COLOURS, SHAPES, POSITIONS, SIZES, PALETTE, EVAL_SIZE, evaluateShapeImage,
  type ShapeColour, type ShapeKind, type ShapePosition, type ShapeSize,
  type ShapePrediction, type ShapeEvaluation, type EvaluateOptions,
} from './shapes-evaluator.js';
export {
  POSITION_PHRASES, EVAL_PROMPT_COUNT, tryParseCaption, parseCaption, formatCaption, evalPrompt,
  scorePrediction, scoreBatch,
  type CaptionVariant, type ShapeCaption, type ShapeScore, type ShapeAccuracy,
} from './shapes-captions.js';
