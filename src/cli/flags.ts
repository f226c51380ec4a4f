/**
 * The library's option names → `tgate generate`'s flag names, for errors the library raises (the CLI checks
 * what it can itself, but the pipelines have the last word): a message says `--steps`, never `numInferenceSteps`.
 */

/** `--prompt-embeds` file: tensor names (diffusers' argument names) → generate() options. */
export const EMBED_NAMES: Record<string, string> = {
  prompt_embeds: 'promptEmbeds', negative_prompt_embeds: 'negativePromptEmbeds', pooled_prompt_embeds: 'pooledPromptEmbeds',
  negative_pooled_prompt_embeds: 'negativePooledPromptEmbeds', prompt_attention_mask: 'promptAttentionMask',
  negative_prompt_attention_mask: 'negativePromptAttentionMask',
};

/** Option names that cannot be mistaken for words (camelCase or dotted): replaced wherever they occur. */
const NAMES: Record<string, string> = {
  ...Object.fromEntries(Object.entries(EMBED_NAMES).map(([file, option]) => [option, `${file} (--prompt-embeds)`])),
  'tgate.gateStep': '--gate-step', 'tgate.spInterval': '--sp-interval', 'tgate.fiInterval': '--fi-interval',
  'tgate.warmUp': '--warm-up', 'tgate.autoThreshold': '--auto-threshold', 'deepcache.cacheInterval': '--deepcache-interval',
  numInferenceSteps: '--steps', guidanceScale: '--guidance', guidanceRescale: '--guidance-rescale',
  numImagesPerPrompt: '--num-images', negativePrompt: '--negative-prompt', maskImage: '--mask',
  clipSkip: '--clip-skip', gateStep: '--gate-step', autoThreshold: '--auto-threshold', weightDtype: '--weight-dtype',
  wasmThreads: '--threads', outputType: '--output-type', controlImage: '--control-image',
  controlnetConditioningScale: '--control-scale', controlGuidanceStart: '--control-guidance-start',
  controlGuidanceEnd: '--control-guidance-end', guessMode: '--guess-mode',
};

/** Option names that are also plain words: replaced only where a message starts with them ("strength must …"). */
const LEADING: Record<string, string> = {
  strength: '--strength', image: '--image', seed: '--seed', eta: '--eta', height: '--height', width: '--width',
  prompt: '--prompt', latents: '--latents', controlnet: '--controlnet',
};

const anywhere = new RegExp(`(?<![\\w.-])(${Object.keys(NAMES).map((k) => k.replace('.', '\\.')).join('|')})(?![\\w])`, 'g');
const leading = new RegExp(`^(${Object.keys(LEADING).join('|')})\\b`);

/** `message` with the library's option names spelled as the CLI's flags. */
export function withFlagNames(message: string): string {
  return message.replace(anywhere, (k) => NAMES[k]).replace(leading, (k) => LEADING[k]);
}
