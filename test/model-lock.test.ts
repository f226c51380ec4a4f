/** The per-model queue (src/nn/model-lock.ts): first come first served, several models at once, abort while waiting. */
import { lockModels, withModelsLocked, type Release } from '../src/nn/model-lock.js';

/** A call that records when it starts and holds its models until `end()` is called. */
function holder(log: string[], name: string, models: object[], signal?: AbortSignal) {
  let release: Release | undefined;
  const started = lockModels(models, { signal }).then((r) => { log.push(name); release = r; });
  return { started, end: () => release!() };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

test('calls on one model run one at a time in call order; releasing twice lets in only one', async () => {
  const m = {};
  const log: string[] = [];
  const [a, b, c] = ['a', 'b', 'c'].map((n) => holder(log, n, [m]));
  await flush();
  expect(log).toEqual(['a']);
  a.end();
  a.end();
  await flush();
  expect(log).toEqual(['a', 'b']);
  b.end();
  await c.started;
  expect(log).toEqual(['a', 'b', 'c']);
  c.end();
});

test('a call on several models waits for all; a later call never overtakes it; an abort while waiting lets the next in', async () => {
  const [x, y] = [{}, {}];
  const log: string[] = [];
  const first = holder(log, 'x', [x]);
  const both = new AbortController();
  const second = holder(log, 'x+y', [x, y], both.signal);
  const third = holder(log, 'y', [y]);
  await flush();
  // y is free, but 'y' was called after 'x+y', which waits for x.
  expect(log).toEqual(['x']);
  both.abort(new Error('no longer needed'));
  await expect(second.started).rejects.toThrow('no longer needed');
  await third.started;
  expect(log).toEqual(['x', 'y']);
  first.end();
  third.end();
  await withModelsLocked([x, y], async () => { log.push('after'); });
  expect(log).toEqual(['x', 'y', 'after']);
});

test('calls naming the same models in opposite orders do not deadlock', async () => {
  const [x, y] = [{}, {}];
  const log: string[] = [];
  const work = (name: string, models: object[]) => withModelsLocked(models, async () => {
    log.push(`${name} in`);
    await flush();
    log.push(`${name} out`);
  });
  await Promise.all([work('xy', [x, y]), work('yx', [y, x]), work('x', [x, x])]);
  expect(log).toEqual(['xy in', 'xy out', 'yx in', 'yx out', 'x in', 'x out']);
});

test('a signal aborted before the call rejects at once with its reason or the given error', async () => {
  const m = {};
  const c = new AbortController();
  c.abort(new Error('stop'));
  await expect(lockModels([m], { signal: c.signal })).rejects.toThrow('stop');
  await expect(lockModels([m], { signal: c.signal, abortError: () => new Error('mine') })).rejects.toThrow('mine');
  const release = await lockModels([m]);
  release();
});
