/**
 * JSON as Python's json module writes it: diffusers saves configs with bare `NaN`, `Infinity` and
 * `-Infinity` (e.g. DPMSolverMultistepScheduler's lambda_min_clipped), which JSON.parse rejects.
 */
export function parseJson<T = Record<string, unknown>>(text: string, source: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    // Only outside strings: a value position is preceded by ':', '[' or ',' (and whitespace).
    const fixed = text.replace(/([:[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, '$1"__pyjson__$2"');
    try {
      return JSON.parse(fixed, (_k, v) => (typeof v === 'string' && v.startsWith('__pyjson__') ? Number(v.slice(10)) : v)) as T;
    } catch (e) {
      throw new Error(`${source} is not valid JSON: ${(e as Error).message}`);
    }
  }
}
