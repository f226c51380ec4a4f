/**
 * A diffusers pipeline's `model_index.json`, checked: `_class_name`, one `[library, class]` entry per component
 * (`[null, null]` for one left out), and the pipeline's own settings (`force_zeros_for_empty_prompt`, …).
 * Component names become folder names, so each must be a plain name inside the pipeline folder.
 */
import { showValue } from './config.js';
import { nameProblem } from './location.js';

/** What a component entry names: the library and class that saved it. */
export interface ComponentEntry { library: string; className: string }

export interface ModelIndex {
  /** The file (or URL) it was read from, named in errors. */
  file: string;
  /** The pipeline class (`StableDiffusionPipeline`…). */
  className: string;
  /** Components in file order: an entry, or null when the file marks the component absent. */
  components: Map<string, ComponentEntry | null>;
  /** The other keys (pipeline settings), as they are. */
  settings: Record<string, unknown>;
}

/** Settings this package reads, with the type each must have. */
const SETTINGS: Record<string, 'boolean'> = { force_zeros_for_empty_prompt: 'boolean', requires_safety_checker: 'boolean' };

/**
 * Checks a parsed model_index.json. `pipelines` (class → its components), when given, is the set of pipeline
 * classes supported: another `_class_name` is an error listing them.
 */
export function parseModelIndex(raw: unknown, file: string, pipelines?: Readonly<Record<string, readonly string[]>>): ModelIndex {
  const fail = (problem: string): never => { throw new Error(`${file}: ${problem}`); };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`expected a JSON object, found ${showValue(raw)}`);
  const o = raw as Record<string, unknown>;
  const cls = o._class_name;
  if (cls === undefined) fail('required key "_class_name" is missing (the pipeline class)');
  if (typeof cls !== 'string') fail(`_class_name=${showValue(cls)} is invalid: expected a string`);
  if (pipelines && !Object.hasOwn(pipelines, cls as string)) {
    fail(`unsupported pipeline _class_name ${showValue(cls)} (supported: ${Object.keys(pipelines).join(', ')})`);
  }
  const components = new Map<string, ComponentEntry | null>();
  const settings: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(o)) {
    if (key.startsWith('_')) continue;
    if (!Array.isArray(v)) {
      if (Object.hasOwn(SETTINGS, key) && typeof v !== SETTINGS[key]) fail(`${key}=${showValue(v)} is invalid: expected true or false`);
      settings[key] = v;
      continue;
    }
    const problem = nameProblem(key) ?? (key.includes('/') ? 'contains "/"' : null);
    if (problem) fail(`component name ${showValue(key)} ${problem}: a component is a folder of the pipeline, named plainly`);
    const absent = v.length === 2 && v[0] === null && v[1] === null;
    if (!absent && !(v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && v[0] && v[1])) {
      fail(`component "${key}"=${showValue(v)} is invalid: expected [library, class] (two strings), or [null, null] for a component left out`);
    }
    components.set(key, absent ? null : { library: v[0] as string, className: v[1] as string });
  }
  return { file, className: cls as string, components, settings };
}
