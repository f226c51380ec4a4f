/**
 * Overlapping calls on one model (issue 18): two generate() calls at once (Promise.all) give exactly, byte for
 * byte, what each gives alone, free every tensor and leave the processors as they were; so do two pipelines
 * sharing a UNet or a ControlNet, a queued call whose signal aborts, and a LoRA fuse issued while a generation runs.
 * sd15_tiny at 32×32 on the cpu backend: a run takes well under a second.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, relL2, useBackend } from './support/helpers.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { StableDiffusionPipeline, type SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';
import type { AttnProcessor } from '../src/attention/processor.js';
import { ControlNetModel } from '../src/models/controlnet.js';

const LORA = fixture('ext2/models/sd15_tiny_lora/pytorch_lora_weights.safetensors');

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  await useBackend('cpu');
  pipe = await loadPipeline(fixture('pipelines/sd15_tiny')) as StableDiffusionPipeline;
}, 60_000);
afterAll(() => pipe.dispose());

interface Out { latents: Float32Array; images: Uint8Array[]; steps: number[] }
const options = (o: Partial<SDGenerateOptions>): SDGenerateOptions =>
  ({ prompt: 'a red circle', numInferenceSteps: 5, seed: 1, height: 32, width: 32, outputType: 'latent', ...o });

async function generate(p: StableDiffusionPipeline, o: SDGenerateOptions): Promise<Out> {
  const steps: number[] = [];
  const r = await p.generate({ ...o, onStep: (s) => { steps.push(s.step); return o.onStep?.(s); } });
  const latents = (await r.latents.data()) as Float32Array;
  r.latents.dispose();
  return { latents, images: r.images.map((i) => i.data), steps };
}

/** Largest rel-L2 between two runs' latents and images (0 when identical). */
function difference(a: Out, b: Out): number {
  const errs = [relL2(a.latents, b.latents), ...a.images.map((img, i) => relL2(Float32Array.from(img), Float32Array.from(b.images[i])))];
  return Math.max(...errs);
}

function expectSame(a: Out, b: Out): void {
  expect(difference(a, b)).toBe(0);
  expect(Buffer.from(a.latents.buffer).equals(Buffer.from(b.latents.buffer))).toBe(true);
  expect(a.images.map((i) => Buffer.from(i).toString('base64'))).toEqual(b.images.map((i) => Buffer.from(i).toString('base64')));
}

const processors = (p: StableDiffusionPipeline): AttnProcessor[] => [...p.unet.attnProcessors().values()];

/** Logs what a concurrent pair gave: each call's rel-L2 to its run alone (or its error), tensors and processors left. */
function report(name: string, got: PromiseSettledResult<Out>[], refs: Out[], before: number, procs: AttnProcessor[]): void {
  const each = got.map((g, i) => (g.status === 'fulfilled' ? difference(g.value, refs[i]).toExponential(2) : `error "${(g.reason as Error).message}"`));
  const changed = processors(pipe).filter((p, i) => p !== procs[i]).length;
  console.log(`${name}: rel-L2 ${each.join(' / ')}; tensors left ${tf.memory().numTensors - before}; processors changed ${changed}`);
}

function settled(r: PromiseSettledResult<Out>): Out {
  if (r.status === 'rejected') throw r.reason;
  return r.value;
}

const TGATE = { gateStep: 4 };
const TGATE3 = { gateStep: 3 };
const AUTO = { gateStep: 'auto' as const };
const DEEPCACHE = { cacheInterval: 3 };

/** The 8 pairs of issue 18; each is run concurrently and compared with its two calls run one after the other. */
const PAIRS: [string, Partial<SDGenerateOptions>, Partial<SDGenerateOptions>][] = [
  ['baseline + baseline', { outputType: 'image' }, { outputType: 'image' }],
  ['different seeds', { seed: 1 }, { seed: 2 }],
  ['TGATE + TGATE', { tgate: TGATE, seed: 1 }, { tgate: TGATE, seed: 2 }],
  ['TGATE + baseline', { tgate: TGATE }, { seed: 2 }],
  ['auto gate + auto gate', { tgate: AUTO, seed: 1 }, { tgate: AUTO, seed: 2 }],
  ['auto gate + TGATE gate 3', { tgate: AUTO }, { tgate: TGATE3, seed: 2 }],
  ['DeepCache + TGATE', { deepcache: DEEPCACHE }, { tgate: TGATE, seed: 2 }],
  ['8 steps + 5 steps', { numInferenceSteps: 8, outputType: 'image' }, { numInferenceSteps: 5, seed: 2, outputType: 'image' }],
];

describe('two generate() calls at once give what they give one after the other', () => {
  const alone = new Map<string, Out>();
  const solo = async (o: Partial<SDGenerateOptions>): Promise<Out> => {
    const key = JSON.stringify(o);
    if (!alone.has(key)) alone.set(key, await generate(pipe, options(o)));
    return alone.get(key)!;
  };

  test.each(PAIRS)('%s', async (name, a, b) => {
    const [refA, refB] = [await solo(a), await solo(b)];
    const before = tf.memory().numTensors;
    const procs = processors(pipe);
    const [outA, outB] = await Promise.allSettled([generate(pipe, options(a)), generate(pipe, options(b))]);
    report(name, [outA, outB], [refA, refB], before, procs);
    expectSame(settled(outA), refA);
    expectSame(settled(outB), refB);
    expect(tf.memory().numTensors).toBe(before);
    processors(pipe).forEach((p, i) => expect(p).toBe(procs[i]));
  }, 60_000);

  test('two pipelines sharing one UNet (PNDM + TGATE, Euler + TGATE) run one at a time', async () => {
    const euler = new StableDiffusionPipeline({ ...pipe, scheduler: schedulerFromConfig(pipe.scheduler.config, 'EulerDiscreteScheduler') });
    try {
      const a = options({ tgate: TGATE });
      const b = options({ tgate: TGATE3, seed: 2 });
      const [refA, refB] = [await generate(pipe, a), await generate(euler, b)];
      const before = tf.memory().numTensors;
      const procs = processors(pipe);
      const [outA, outB] = await Promise.allSettled([generate(pipe, a), generate(euler, b)]);
      report('shared UNet', [outA, outB], [refA, refB], before, procs);
      expectSame(settled(outA), refA);
      expectSame(settled(outB), refB);
      expect(tf.memory().numTensors).toBe(before);
      processors(pipe).forEach((p, i) => expect(p).toBe(procs[i]));
    } finally {
      euler.scheduler.dispose();
    }
  }, 60_000);
});

test('two pipelines sharing one ControlNet (both with TGATE, which installs processors on it) run one at a time', async () => {
  const cn = await ControlNetModel.fromPretrained(fixture('ext2/models/sd15_tiny_controlnet'));
  const other = await loadPipeline(fixture('pipelines/sd15_tiny'), { controlnet: cn }) as StableDiffusionPipeline;
  const control = tf.tidy(() => tf.randomUniform([1, 3, 32, 32], 0, 1, 'float32', 3));
  const withCn = new StableDiffusionPipeline({ ...pipe, controlnets: [cn] });
  try {
    const a = options({ tgate: TGATE, controlImage: control });
    const b = options({ tgate: TGATE3, seed: 2, controlImage: control, controlnetConditioningScale: 0.5 });
    const [refA, refB] = [await generate(withCn, a), await generate(other, b)];
    const before = tf.memory().numTensors;
    const cnProcs = [...cn.attnProcessors().values()];
    const [outA, outB] = await Promise.allSettled([generate(withCn, a), generate(other, b)]);
    report('shared ControlNet', [outA, outB], [refA, refB], before, processors(pipe));
    expectSame(settled(outA), refA);
    expectSame(settled(outB), refB);
    expect(tf.memory().numTensors).toBe(before);
    [...cn.attnProcessors().values()].forEach((p, i) => expect(p).toBe(cnProcs[i]));
  } finally {
    other.dispose(); // frees the ControlNet too
    control.dispose();
  }
}, 60_000);

describe('the queue', () => {
  test('calls run one at a time in the order they were made; a queued call whose signal aborts rejects at once, the others keep their places', async () => {
    const refs = [await generate(pipe, options({ seed: 1 })), await generate(pipe, options({ seed: 2 })), await generate(pipe, options({ seed: 3 }))];
    const before = tf.memory().numTensors;
    const events: string[] = [];
    const queued = new AbortController();
    const call = (name: string, o: Partial<SDGenerateOptions>) => generate(pipe, options({
      ...o, onStep: ({ step }) => { events.push(`${name}${step}`); if (name === 'A' && step === 1) queued.abort(); },
    })).catch((e: Error) => { events.push(`${name} ${e.name}`); throw e; });
    const a = call('A', { seed: 1 });
    const b = call('B', { seed: 2, signal: queued.signal });
    const c = call('C', { seed: 3 });
    const d = call('D', { seed: 2 });
    await expect(b).rejects.toThrow(/^generate \(waiting for another call on this model\): aborted$/);
    const [outA, outC, outD] = await Promise.all([a, c, d]);
    // Every step of A, then of C, then of D: no interleaving; B rejected as soon as it aborted, while A ran.
    const steps = (name: string) => refs[0].steps.map((i) => `${name}${i}`);
    expect(events.filter((e) => !e.startsWith('B'))).toEqual([...steps('A'), ...steps('C'), ...steps('D')]);
    expect(events.indexOf('B AbortError')).toBeGreaterThan(events.indexOf('A1'));
    expect(events.indexOf('B AbortError')).toBeLessThan(events.indexOf(steps('A').at(-1)!));
    expectSame(outA, refs[0]);
    expectSame(outC, refs[2]);
    expectSame(outD, refs[1]);
    expect(tf.memory().numTensors).toBe(before);
  }, 60_000);

  test('a LoRA load, fuse and unload issued while a generation runs wait for it, in call order', async () => {
    const plain = await generate(pipe, options({ tgate: TGATE }));
    await pipe.loadLora(LORA, { scale: 0.8 });
    const unfused = await generate(pipe, options({ seed: 2 }));
    await pipe.fuseLora();
    const fused = await generate(pipe, options({ seed: 2 }));
    await pipe.unloadLora();
    const weights = tf.memory().numTensors;

    const events: string[] = [];
    const note = <T>(name: string, p: Promise<T>) => p.then((r) => { events.push(name); return r; });
    const a = note('A', generate(pipe, options({ tgate: TGATE })));
    const load = note('load', pipe.loadLora(LORA, { scale: 0.8 }));
    const b = note('B', generate(pipe, options({ seed: 2 })));
    const fuse = note('fuse', pipe.fuseLora());
    const c = note('C', generate(pipe, options({ seed: 2 })));
    const unload = note('unload', pipe.unloadLora());
    const [outA, , outB, , outC] = await Promise.all([a, load, b, fuse, c, unload]);
    console.log(`LoRA issued during generations: rel-L2 to the runs one after the other ${[[outA, plain], [outB, unfused], [outC, fused]].map(([x, y]) => difference(x, y)).join(' / ')}`);
    expect(events).toEqual(['A', 'load', 'B', 'fuse', 'C', 'unload']);
    expectSame(outA, plain);
    expectSame(outB, unfused);
    expectSame(outC, fused);
    expect(difference(fused, unfused)).toBeGreaterThan(0);
    expect(pipe.listLoras()).toEqual([]);
    expect(tf.memory().numTensors).toBe(weights);
  }, 60_000);
});
