/**
 * TGATE and DeepCache with a ControlNet (no reference exists: T-GATE has no ControlNet loader; the README defines
 * it). TGATE: a gate at the last step equals the baseline exactly; the Linear/Conv2d work a run executes (UNet and
 * ControlNet, counted layer by layer) equals bench/macs.ts's count, in guess mode and with the automatic gate too;
 * the ControlNet's batch per step. DeepCache: every step full equals no DeepCache exactly; a cached step adds the
 * ControlNet's first residual to conv_in's skip.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T, useBackend } from './support/helpers.js';
import { countLayerMacs } from './support/layer-macs.js';
import { loadPipeline } from '../src/pipelines/load.js';
import { schedulerFromConfig } from '../src/samplers/index.js';
import { DeepCache } from '../src/pipelines/deepcache.js';
import { modelMacs } from '../src/models/registry.js';
import { controlnetGenerationMacs, totalMacs, type ForwardMacs } from '../bench/macs.js';
import type { StableDiffusionPipeline, SDGenerateOptions } from '../src/pipelines/stable-diffusion.js';
import type { ControlNetForwardOptions, ControlNetModel, ControlNetOutput } from '../src/models/controlnet.js';
import type { TgateOptions } from '../src/attention/tgate.js';

const index = readPythonJson<{ sd15_tiny_controlnet_ddim: { scheduler: { config_passed: Record<string, unknown> } } }>(fixture('ext2/controlnet/index.json'));
const STEPS = 10;

let pipe: StableDiffusionPipeline;
let cn: ControlNetModel;
let g: Record<string, tf.Tensor>;

beforeAll(async () => {
  await useBackend('wasm');
  pipe = await loadPipeline(fixture('pipelines/sd15_tiny'), { controlnet: fixture('ext2/models/sd15_tiny_controlnet') }) as StableDiffusionPipeline;
  pipe.scheduler.dispose();
  pipe.scheduler = schedulerFromConfig(index.sd15_tiny_controlnet_ddim.scheduler.config_passed, 'DDIMScheduler');
  cn = pipe.controlnets[0];
  g = await loadFixture('ext2/controlnet/sd15_tiny_controlnet_ddim_baseline.safetensors');
});
afterAll(() => { pipe.dispose(); tf.dispose(Object.values(g)); });

/** The recorded run's inputs, 10 DDIM steps, with `extra`; returns the final latents and the ControlNet's batch per call. */
async function run(extra: Partial<SDGenerateOptions> = {}): Promise<{ latents: tf.Tensor; cnBatch: number[]; gate?: number }> {
  const forward = cn.forward.bind(cn);
  const cnBatch: number[] = [];
  cn.forward = (o: ControlNetForwardOptions): ControlNetOutput => { cnBatch.push(o.sample.shape[0]); return forward(o); };
  let gate: number | undefined;
  try {
    const { latents } = await pipe.generate({
      promptEmbeds: g['in.prompt_embeds'], negativePromptEmbeds: g['in.negative_prompt_embeds'], controlImage: g['in.image'],
      latents: g['in.latents'], numInferenceSteps: STEPS, guidanceScale: 7.5, controlnetConditioningScale: 0.8, controlGuidanceEnd: 0.8,
      outputType: 'latent', onStep: (s) => { gate = s.gateStep ?? gate; }, ...extra,
    });
    return { latents, cnBatch, gate };
  } finally {
    delete (cn as Partial<ControlNetModel>).forward;
  }
}

const same = (a: tf.Tensor, b: tf.Tensor) => Buffer.compare(Buffer.from(a.dataSync().buffer), Buffer.from(b.dataSync().buffer)) === 0;

describe('TGATE on the ControlNet', () => {
  test.each([false, true])('a gate at the last step (no self-attention reuse) equals the baseline exactly (guess mode %s)', async (guessMode) => {
    const before = tf.memory().numTensors;
    const base = await run({ guessMode });
    const gated = await run({ guessMode, tgate: { gateStep: STEPS, spInterval: 1, warmUp: 0 } });
    expect(relL2T(gated.latents, base.latents)).toBe(0);
    expect(same(gated.latents, base.latents)).toBe(true);
    // The ControlNet ran the guidance batch, or only the conditional half in guess mode.
    expect(gated.cnBatch).toEqual(new Array(STEPS).fill(guessMode ? 1 : 2));
    tf.dispose([base.latents, gated.latents]);
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);

  const unetF = (): ForwardMacs => modelMacs(pipe.unet, { height: 96, width: 96 });
  const cnF = (): ForwardMacs => modelMacs(cn, { height: 96, width: 96 });
  const CASES: [string, TgateOptions | null, boolean][] = [
    ['baseline', null, false],
    ['gate 4, sp 5, fi 1, warm-up 2', { gateStep: 4 }, false],
    ['gate 7, sp 2, fi 2, warm-up 1, guess mode', { gateStep: 7, spInterval: 2, fiInterval: 2, warmUp: 1 }, true],
    ['automatic gate', { gateStep: 'auto', autoThreshold: 10 }, false],
  ];
  test.each(CASES)('%s: the MACs run (UNet + ControlNet, layer by layer) equal the count', async (_name, tgate, guessMode) => {
    let cnCount = 0;
    const { macs, result } = await countLayerMacs([pipe.unet], async () => {
      const inner = await countLayerMacs([cn], () => run({ tgate, guessMode }));
      cnCount = totalMacs({ ...inner.macs, selfMatmul: 0, crossMatmul: 0 });
      return inner.result;
    });
    result.latents.dispose();
    // The automatic gate closes at the earliest step its rule allows (patience 2: gate 4) with this threshold.
    const schedule = tgate?.gateStep === 'auto' ? { ...tgate, gateStep: result.gate!, autoThreshold: undefined } : tgate;
    if (tgate?.gateStep === 'auto') expect(result.gate).toBe(4);
    const unetCount = totalMacs({ ...macs, selfMatmul: 0, crossMatmul: 0 });
    const want = controlnetGenerationMacs(unetF(), [cnF()], STEPS, schedule, { guessMode });
    const wantCn = controlnetGenerationMacs({ rest: 0, selfLinear: 0, crossLinear: 0, selfMatmul: 0, crossMatmul: 0 }, [cnF()], STEPS, schedule, { guessMode });
    const baseline = controlnetGenerationMacs(unetF(), [cnF()], STEPS, null);
    console.log(`${_name}: counted ${(unetCount + cnCount) / 1e9} GMACs (ControlNet ${cnCount / 1e9}), analytic ${want / 1e9}; ratio to the baseline ${(baseline / want).toFixed(4)}`);
    expect([unetCount + cnCount, cnCount]).toEqual([want, wantCn]);
    const gate = schedule?.gateStep as number | undefined;
    expect(result.cnBatch).toEqual(Array.from({ length: STEPS }, (_, i) => (guessMode || (gate !== undefined && i >= gate) ? 1 : 2)));
    if (tgate) expect(want).toBeLessThan(baseline);
  }, 120_000);
});

describe('DeepCache with a ControlNet', () => {
  test('DeepCache running every step in full equals no DeepCache exactly (with TGATE)', async () => {
    const tgate = { gateStep: 4, spInterval: 1, warmUp: 0 };
    const plain = await run({ tgate });
    const cached = await run({ tgate, deepcache: { cacheInterval: 1 } });
    expect(same(cached.latents, plain.latents)).toBe(true);
    const every3 = await run({ tgate, deepcache: { cacheInterval: 3 } });
    const moved = relL2T(every3.latents, plain.latents);
    console.log(`DeepCache every 3 steps + TGATE gate 4 + ControlNet vs TGATE alone: rel-L2 ${moved.toExponential(2)}`);
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(0.5);
    // The ControlNet runs every step (the cached UNet path reads its first residual).
    expect(every3.cnBatch).toEqual([2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
    tf.dispose([plain.latents, cached.latents, every3.latents]);
  }, 120_000);

  test('a cached step adds the ControlNet\'s first residual to conv_in\'s skip', () => {
    const x = { sample: tf.randomNormal([2, 4, 12, 12], 0, 1, 'float32', 1), timestep: 500, encoderHiddenStates: g['in.prompt_embeds'].concat(g['in.negative_prompt_embeds']) };
    const res = cn.forward({ ...x, controlnetCond: g['in.image'] });
    const withRes = { ...x, downBlockAdditionalResiduals: res.downBlockResSamples, midBlockAdditionalResidual: res.midBlockResSample };
    const dc = new DeepCache(pipe.unet, { cacheInterval: 2 });
    dc.beforeStep(0);
    const full = dc.forward(withRes);
    dc.beforeStep(1);
    // The same inputs again: the cached path must give what the full UNet gave.
    const again = dc.forward(withRes);
    const zeros = dc.forward({ ...withRes, downBlockAdditionalResiduals: res.downBlockResSamples.map((r) => tf.zerosLike(r)) });
    const e = relL2T(again, full);
    const without = relL2T(zeros, full);
    console.log(`DeepCache cached step with the same inputs vs the full step: rel-L2 ${e.toExponential(2)}; without residual 0: ${without.toExponential(2)}`);
    expect(e).toBeLessThanOrEqual(1e-6);
    expect(without).toBeGreaterThan(1e-3);
    dc.dispose();
    tf.dispose([x.sample, x.encoderHiddenStates, ...res.downBlockResSamples, res.midBlockResSample, full, again, zeros]);
  });
});
