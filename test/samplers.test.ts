/**
 * Samplers against diffusers v0.30.3, table-driven from test/fixtures/schedulers/index.json: every recorded case is
 * checked for its timesteps/sigmas/init_noise_sigma and replayed with the recorded fake model (noise injected).
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { fixture, loadFixture, relL2T } from './support/helpers.js';
import { schedulerFromConfig, Rng, SCHEDULER_LIST, SCHEDULERS, type Scheduler } from '../src/samplers/index.js';

interface Case {
  class: string;
  config_passed: Record<string, unknown>;
  config_resolved: Record<string, unknown>;
  step_kwargs: Record<string, unknown>;
  order: number;
  timesteps: Record<string, number[]>;
  sigmas?: Record<string, number[]>;
  init_noise_sigma: Record<string, number>;
}

// Python's json writes -inf as a bare `-Infinity`, which JSON.parse rejects.
const INDEX = JSON.parse(
  readFileSync(fixture('schedulers', 'index.json'), 'utf8').replace(/(-?)Infinity/g, '"$1Infinity"'),
) as { cases: Record<string, Case> };
const CASES = Object.entries(INDEX.cases);
const TOL = 1e-5;
const worst: Record<string, number> = {};

function sameValue(a: unknown, b: unknown): boolean {
  if (typeof b === 'string' && /Infinity$/.test(b)) return Number(a) === Number(b);
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The fixture's fake model: 0.1·input + 0.05·sin(t/100) (the sin term in float64, added as float32). */
function fakeModel(mi: tf.Tensor, t: number): tf.Tensor {
  return tf.tidy(() => tf.add(tf.mul(mi, 0.1), Math.fround(0.05 * Math.sin(t / 100))));
}

describe.each(CASES)('%s', (name, c) => {
  test('config, timesteps, sigmas, init_noise_sigma', () => {
    const s = schedulerFromConfig(c.config_passed, c.class);
    expect(s.config._class_name).toBe(c.class);
    expect(s.order).toBe(c.order);
    for (const [k, v] of Object.entries(c.config_resolved)) {
      if (!k.startsWith('_')) expect([k, sameValue(s.config[k], v)]).toEqual([k, true]);
    }
    for (const [n, ts] of Object.entries(c.timesteps)) {
      s.setTimesteps(Number(n));
      expect(s.timesteps).toEqual(ts);
      expect(s.initNoiseSigma).toBeCloseTo(c.init_noise_sigma[n], 6);
      const ref = c.sigmas?.[n];
      if (ref) {
        expect(s.sigmas).toBeDefined();
        expect(s.sigmas!.length).toBe(ref.length);
        ref.forEach((r, i) => expect(Math.abs(s.sigmas![i] - r)).toBeLessThanOrEqual(1e-6 * Math.abs(r)));
      }
    }
    s.dispose();
  });

  test.each([4, 10])('trajectory n=%i matches diffusers (rel-L2 ≤ 1e-5)', async (n) => {
    const ref = await loadFixture(`schedulers/${name}.safetensors`);
    const get = (k: string): tf.Tensor | undefined => ref[`n${n}.${k}`];
    const s = schedulerFromConfig(c.config_passed, c.class);
    s.setTimesteps(n);
    const refTs = Array.from(get('timesteps')!.dataSync());
    expect(s.timesteps).toEqual(refTs);
    const prevRef = tf.unstack(get('prev_sample')!);
    const x0Ref = get('pred_original_sample') ? tf.unstack(get('pred_original_sample')!) : undefined;
    const noise = get('noise') ? tf.unstack(get('noise')!) : [];
    const noiseStep = get('noise_step') ? Array.from(get('noise_step')!.dataSync()) : [];
    let x = tf.mul(get('x_T_raw')!, s.initNoiseSigma);
    expect(relL2T(x, get('x_T')!)).toBeLessThanOrEqual(TOL);
    let maxErr = 0;
    s.timesteps.forEach((t, i) => {
      const mi = s.scaleModelInput(x, t);
      const eps = fakeModel(mi, t);
      const draws = noiseStep.flatMap((st, k) => (st === i ? [noise[k]] : []));
      expect(draws.length).toBeLessThanOrEqual(1);
      const out = s.step(eps, t, x, { ...(c.step_kwargs as { eta?: number }), noise: draws[0] });
      const e = relL2T(out.prevSample, prevRef[i]);
      maxErr = Math.max(maxErr, e);
      expect(e).toBeLessThanOrEqual(TOL);
      const x0 = out.denoised ?? out.predOriginalSample;
      if (x0Ref) {
        expect(x0).toBeDefined();
        const e0 = relL2T(x0!, x0Ref[i]);
        maxErr = Math.max(maxErr, e0);
        expect(e0).toBeLessThanOrEqual(TOL);
      }
      if (mi !== x) mi.dispose();
      eps.dispose();
      x.dispose();
      if (out.predOriginalSample && out.predOriginalSample !== out.prevSample) out.predOriginalSample.dispose();
      if (out.denoised && out.denoised !== out.prevSample) out.denoised.dispose();
      x = out.prevSample;
    });
    worst[`${name} n${n}`] = maxErr;
    x.dispose();
    s.dispose();
    tf.dispose([...prevRef, ...(x0Ref ?? []), ...noise, ...Object.values(ref)]);
  });
});

describe('schedulerFromConfig', () => {
  const SD = INDEX.cases.ddim_sd.config_passed;

  test('className overrides _class_name; unknown keys are ignored', () => {
    const s = schedulerFromConfig({ ...SD, _class_name: 'PNDMScheduler', some_future_key: 3 }, 'EulerDiscreteScheduler');
    expect(s.config._class_name).toBe('EulerDiscreteScheduler');
    s.setTimesteps(4);
    expect(s.timesteps).toEqual(INDEX.cases.euler_sd.timesteps['4']);
    expect(schedulerFromConfig({ ...SD, _class_name: 'LCMScheduler' }).config._class_name).toBe('LCMScheduler');
  });

  test('unknown class is an error naming it', () => {
    expect(() => schedulerFromConfig({ _class_name: 'HeunDiscreteScheduler' })).toThrow(/_class_name="HeunDiscreteScheduler"/);
    expect(() => schedulerFromConfig({ _class_name: 'toString' })).toThrow(/_class_name="toString"/);
    expect(() => schedulerFromConfig({})).toThrow(/_class_name/);
  });

  test.each([
    ['DDIMScheduler', { beta_schedule: 'sigmoid' }, /beta_schedule="sigmoid"/],
    ['DDIMScheduler', { thresholding: 'yes' }, /thresholding="yes"/],
    ['DDIMScheduler', { num_train_timesteps: 1e9 }, /num_train_timesteps=1000000000 is invalid: expected an integer in 2…100000/],
    ['DDIMScheduler', { beta_start: '0.1' }, /beta_start="0.1" is invalid: expected a number in 0…1/],
    ['DDIMScheduler', { trained_betas: [0.1, 0.2] }, /trained_betas=\[0.1,0.2\] is invalid: expected a list of 1000 entries, each a number ≥ 0 and < 1/],
    ['DDIMScheduler', { prediction_type: 'flow' }, /prediction_type="flow"/],
    ['DDIMScheduler', { timestep_spacing: 'karras' }, /timestep_spacing="karras"/],
    ['PNDMScheduler', { skip_prk_steps: 'no' }, /skip_prk_steps="no"/],
    ['PNDMScheduler', { prediction_type: 'sample' }, /prediction_type="sample"/],
    ['DPMSolverMultistepScheduler', { algorithm_type: 'dpm' }, /algorithm_type="dpm"/],
    ['DPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver++', solver_order: 3 }, /no third-order update/],
    ['DPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver' }, /final_sigmas_type="zero" is not supported with algorithm_type="dpmsolver"/],
    ['DPMSolverMultistepScheduler', { use_karras_sigmas: true, use_lu_lambdas: true }, /cannot both be true/],
    ['DPMSolverSinglestepScheduler', { algorithm_type: 'dpmsolver', final_sigmas_type: 'sigma_min', thresholding: true }, /thresholding=true is not supported with algorithm_type "dpmsolver"/],
    ['UniPCMultistepScheduler', { solver_p: {} }, /solver_p=\{\}/],
    ['UniPCMultistepScheduler', { lower_order_final: false }, /lower_order_final=false with solver_order>1 and final_sigmas_type "zero" gives non-finite/],
    ['UniPCMultistepScheduler', { disable_corrector: [1.5] }, /disable_corrector/],
    ['DEISMultistepScheduler', { algorithm_type: 'sde-dpmsolver++' }, /algorithm_type="sde-dpmsolver\+\+"/],
    ['EDMEulerScheduler', { sigma_schedule: 'linear' }, /sigma_schedule="linear"/],
    ['EDMDPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver' }, /algorithm_type="dpmsolver"/],
    ['DPMSolverMultistepScheduler', { solver_order: 4 }, /solver_order=4/],
    ['DPMSolverMultistepScheduler', { final_sigmas_type: 'one' }, /final_sigmas_type="one"/],
    ['EulerDiscreteScheduler', { interpolation_type: 'log_linear' }, /interpolation_type="log_linear"/],
  ])('%s %j is rejected', (cls, opt, re) => {
    expect(() => schedulerFromConfig({ ...SD, ...opt }, cls)).toThrow(re);
  });
});

describe('options beyond the recorded cases', () => {
  const SD = INDEX.cases.ddim_sd.config_passed;

  test('SCHEDULER_LIST names every class once, with a one-line description', () => {
    expect(SCHEDULER_LIST.map((s) => s.name).sort()).toEqual(Object.keys(SCHEDULERS).sort());
    for (const s of SCHEDULER_LIST) {
      expect(new s.ctor({}).config._class_name).toBe(s.name);
      expect(s.description).toMatch(/^[^\n]{10,100}$/);
    }
  });

  test('set_begin_index exists where diffusers has it; setTimesteps clears it', () => {
    for (const { name } of SCHEDULER_LIST) {
      const s = schedulerFromConfig(SD, name);
      expect([name, typeof s.setBeginIndex]).toEqual([name, ['DDIMScheduler', 'PNDMScheduler'].includes(name) ? 'undefined' : 'function']);
    }
    const e = schedulerFromConfig(SD, 'EulerDiscreteScheduler');
    expect(() => e.setBeginIndex!(-1)).toThrow(/non-negative integer/);
    e.setTimesteps(10);
    e.setBeginIndex!(3);
    const x = tf.ones([1, 4, 2, 2]);
    const atBegin = e.addNoise(x, x, 999); // the timestep is ignored once a begin index is set
    e.setTimesteps(10);
    expect(() => e.addNoise(x, x, 999)).toThrow(/timestep 999 is not in the current schedule/);
    expect(atBegin.dataSync()[0]).toBeCloseTo(1 + e.sigmas![3], 5);
    tf.dispose([x, atBegin]);
  });

  test('a step past the end of the schedule is an error, not a NaN', () => {
    for (const { name } of SCHEDULER_LIST.filter((s) => !['DDIMScheduler', 'PNDMScheduler'].includes(s.name))) {
      const s = schedulerFromConfig(SD, name);
      s.setTimesteps(2);
      s.setBeginIndex!(2);
      const x = tf.zeros([1, 4, 2, 2]);
      expect(() => s.step(x, s.timesteps[1], x)).toThrow(/step 2 is past the 2-step schedule/);
      x.dispose();
    }
  });

  test('PNDM Runge–Kutta warm-up: N + 9 model evaluations, and N ≥ 4', () => {
    const p = schedulerFromConfig({ ...SD, skip_prk_steps: false }, 'PNDMScheduler');
    p.setTimesteps(10);
    expect(p.timesteps.length).toBe(19);
    expect(() => p.setTimesteps(3)).toThrow(/Runge–Kutta warm-up .* needs num_inference_steps ≥ 4, got 3/);
  });

  test('zero-SNR rescale gives alphas_cumprod ending at 0 (DDIM) and runs trailing v-prediction', () => {
    const s = schedulerFromConfig({ ...SD, rescale_betas_zero_snr: true, timestep_spacing: 'trailing', prediction_type: 'v_prediction' }, 'DDIMScheduler');
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 749, 499, 249]);
    const ac = (s as unknown as { alphasCumprod: Float32Array }).alphasCumprod;
    expect(ac[999]).toBeLessThan(1e-9);
    s.dispose();
  });

  test('squaredcos_cap_v2 and DPM order 3 / sigma_min run finite', () => {
    const s = schedulerFromConfig({ beta_schedule: 'squaredcos_cap_v2', solver_order: 3, final_sigmas_type: 'sigma_min', euler_at_final: true }, 'DPMSolverMultistepScheduler');
    s.setTimesteps(8);
    let x = new Rng(1).randn([1, 4, 4, 4]);
    for (const t of s.timesteps) {
      const eps = fakeModel(x, t);
      const out = s.step(eps, t, x);
      eps.dispose();
      x.dispose();
      x = out.prevSample;
    }
    expect(Number.isFinite(tf.sum(x).dataSync()[0])).toBe(true);
    x.dispose();
    s.dispose();
  });

  test('Euler karras sigmas span [sigma(t_last), sigma_max] and trained_betas reproduce a named schedule', () => {
    const e = schedulerFromConfig({ ...SD, use_karras_sigmas: true }, 'EulerDiscreteScheduler');
    e.setTimesteps(10);
    const ref = INDEX.cases.euler_sd.sigmas!['10'];
    expect(e.sigmas![0]).toBeCloseTo(ref[0], 5);
    expect(e.sigmas![9]).toBeCloseTo(ref[9], 5);
    for (let i = 1; i < 11; i++) expect(e.sigmas![i]).toBeLessThan(e.sigmas![i - 1]);
    const betas = Array.from({ length: 1000 }, (_, i) => 0.0001 + (i * (0.02 - 0.0001)) / 999);
    const a = schedulerFromConfig({ trained_betas: betas }, 'DDIMScheduler') as unknown as { alphasCumprod: Float32Array };
    const b = schedulerFromConfig({}, 'DDIMScheduler') as unknown as { alphasCumprod: Float32Array };
    expect(Math.abs(a.alphasCumprod[999] - b.alphasCumprod[999])).toBeLessThan(1e-6);
  });

  test('Rng is deterministic and roughly standard normal', () => {
    const a = new Rng(42).randn([4096]);
    const b = new Rng(42).randn([4096]);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    const { mean, variance } = tf.moments(a);
    expect(Math.abs(mean.dataSync()[0])).toBeLessThan(0.06);
    expect(Math.abs(variance.dataSync()[0] - 1)).toBeLessThan(0.08);
    tf.dispose([a, b, mean, variance]);
  });
});

describe('a new setTimesteps starts a fresh run', () => {
  test.each(['pndm_sd', 'dpmpp2m_sd', 'euler_ancestral_sd', 'lcm_sd'])('%s: n=10 run then the recorded n=4 run', async (name) => {
    const c = INDEX.cases[name];
    const ref = await loadFixture(`schedulers/${name}.safetensors`);
    const s = schedulerFromConfig(c.config_passed, c.class);
    for (const n of [10, 4]) {
      s.setTimesteps(n);
      const noise = ref[`n${n}.noise`] ? tf.unstack(ref[`n${n}.noise`]) : [];
      const noiseStep = ref[`n${n}.noise_step`] ? Array.from(ref[`n${n}.noise_step`].dataSync()) : [];
      let x = tf.mul(ref[`n${n}.x_T_raw`], s.initNoiseSigma);
      s.timesteps.forEach((t, i) => {
        const mi = s.scaleModelInput(x, t);
        const eps = fakeModel(mi, t);
        const k = noiseStep.indexOf(i);
        const out = s.step(eps, t, x, { noise: k >= 0 ? noise[k] : undefined });
        tf.dispose([mi, eps, x]);
        if (out.predOriginalSample !== out.prevSample) out.predOriginalSample?.dispose();
        if (out.denoised !== out.prevSample) out.denoised?.dispose();
        x = out.prevSample;
      });
      const last = tf.unstack(ref[`n${n}.prev_sample`]);
      expect(relL2T(x, last[last.length - 1])).toBeLessThanOrEqual(TOL);
      tf.dispose([x, ...last, ...noise]);
    }
    s.dispose();
    tf.dispose(Object.values(ref));
  });
});

describe('no tensor leaks', () => {
  test.each(CASES.map(([n, c]) => [n, c] as const))('%s: a full run keeps only the returned tensors', (_name, c) => {
    const s: Scheduler = schedulerFromConfig(c.config_passed, c.class);
    const x0 = new Rng(3).randn([1, 4, 8, 8]);
    const before = tf.memory().numTensors;
    for (let run = 0; run < 2; run++) {
      s.setTimesteps(run === 0 ? 6 : 4); // a second setTimesteps must drop the first run's history
      let x = tf.clone(x0);
      for (const t of s.timesteps) {
        const mi = s.scaleModelInput(x, t);
        const eps = fakeModel(mi, t);
        const out = s.step(eps, t, x, { ...(c.step_kwargs as { eta?: number }), generator: new Rng(5) });
        tf.dispose([mi, eps, x]);
        if (out.predOriginalSample !== out.prevSample) out.predOriginalSample?.dispose();
        if (out.denoised !== out.prevSample) out.denoised?.dispose();
        x = out.prevSample;
      }
      x.dispose();
    }
    s.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x0.dispose();
  });
});

afterAll(() => {
  if (Object.keys(worst).length) console.log('worst rel-L2 per case:\n' + Object.entries(worst).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join('\n'));
});
