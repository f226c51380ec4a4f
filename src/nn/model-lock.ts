/**
 * One call at a time per model. A generation installs attention processors on its denoiser and steps its
 * scheduler for the whole run; a LoRA fuse rewrites weights. Two such calls that overlap on one object (one
 * pipeline called twice, two pipelines built on one UNet, a fuse during a generation) would corrupt each
 * other, so each call holds the objects it uses while it runs and the others wait.
 *
 * The queue is first come, first served per object. A call on several objects is queued on all of them at
 * once, when it is made, and runs when it is first in every one of those queues: so calls start in the order
 * they were made, and two calls can never each hold what the other waits for (no deadlock). A call never
 * overtakes an earlier one that shares an object with it, even one still waiting for something else.
 */

/** Lets the next call in; calling it again does nothing. */
export type Release = () => void;

interface Waiter {
  queues: Waiter[][];
  running: boolean;
  start(): void;
}

const queues = new WeakMap<object, Waiter[]>();

function queueOf(model: object): Waiter[] {
  let q = queues.get(model);
  if (!q) queues.set(model, (q = []));
  return q;
}

const first = (w: Waiter): boolean => w.queues.every((q) => q[0] === w);

/** Takes `w` out of its queues and starts every call that is now first in all of its own. */
function leave(w: Waiter): void {
  for (const q of w.queues) q.splice(q.indexOf(w), 1);
  for (const q of w.queues) {
    const next = q[0];
    if (next && !next.running && first(next)) next.start();
  }
}

/**
 * Waits until no earlier call holds any of `models`, then holds them until the returned {@link Release} is
 * called. With `signal`, a call still waiting when it aborts leaves the queue (the others keep their places)
 * and rejects at once with `abortError()` (default: the signal's reason); once running, the caller decides.
 */
export function lockModels(models: readonly object[], wait: { signal?: AbortSignal; abortError?: () => unknown } = {}): Promise<Release> {
  const { signal } = wait;
  const reason = (): unknown => (wait.abortError ? wait.abortError() : signal?.reason);
  return new Promise<Release>((resolve, reject) => {
    if (signal?.aborted) {
      reject(reason());
      return;
    }
    const onAbort = (): void => {
      leave(w);
      reject(reason());
    };
    const w: Waiter = {
      queues: [...new Set(models)].map(queueOf),
      running: false,
      start: () => {
        w.running = true;
        signal?.removeEventListener('abort', onAbort);
        let held = true;
        resolve(() => {
          if (held) leave(w);
          held = false;
        });
      },
    };
    for (const q of w.queues) q.push(w);
    if (first(w)) w.start();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs `fn` holding `models` (see {@link lockModels}). */
export async function withModelsLocked<T>(models: readonly object[], fn: () => Promise<T>): Promise<T> {
  const release = await lockModels(models);
  try {
    return await fn();
  } finally {
    release();
  }
}
