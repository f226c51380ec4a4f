/**
 * The ext2 samplers against diffusers v0.30.3 (test/fixtures/ext2/schedulers, see its README): configs, schedules,
 * every trajectory for N = 7, 13, 25 replayed with the recorded fake model and noise (rel-L2 ≤ 1e-5 per step),
 * `add_noise` of every class incl. the begin-index and after-a-step rules (≤ 1e-6), and the NaN-trap configs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fixture, loadFixture, readPythonJson, relL2T } from './support/helpers.js';
import { schedulerFromConfig, type Scheduler } from '../src/samplers/index.js';

interface Case {
  class: string;
  config_passed: Record<string, unknown>;
  config_resolved: Record<string, unknown>;
  config_after_set_timesteps: Record<string, Record<string, unknown>>;
  timesteps: Record<string, number[]>;
  sigmas: Record<string, number[]>;
  init_noise_sigma: Record<string, number>;
}
interface NoiseCase {
  class: string;
  config: Record<string, unknown>;
  set_timesteps: number | null;
  begin_index_variant?: { begin_index: number; key: string };
  after_step_variant?: { key: string };
}
interface Probe { config: Record<string, unknown>; non_finite_steps: Record<string, unknown[]> }

const INDEX = readPythonJson<{ cases: Record<string, Case>; add_noise: Record<string, NoiseCase> } & Record<string, Probe>>(
  fixture('ext2', 'schedulers', 'index.json'),
);
const CASES = Object.entries(INDEX.cases);
const STEPS = [7, 13, 25];
const worst: Record<string, number> = {};
const note = (key: string, e: number): void => {
  worst[key] = Math.max(worst[key] ?? 0, e);
};

/** The fixtures' fake model: 0.1·input + 0.05·sin(t/100) (the sin term in float64, added as float32). */
function fakeModel(mi: tf.Tensor, t: number): tf.Tensor {
  return tf.tidy(() => tf.add(tf.mul(mi, 0.1), Math.fround(0.05 * Math.sin(t / 100))));
}

const sameValue = (a: unknown, b: unknown): boolean => (typeof b === 'number' ? Number(a) === b : JSON.stringify(a) === JSON.stringify(b));

describe.each(CASES)('%s', (name, c) => {
  test('config, timesteps, sigmas, init_noise_sigma', () => {
    const s = schedulerFromConfig(c.config_passed, c.class);
    for (const [k, v] of Object.entries(c.config_resolved)) {
      if (!k.startsWith('_')) expect([k, sameValue(s.config[k], v)]).toEqual([k, true]);
    }
    expect([...(s.config._use_default_values as string[])].sort()).toEqual([...(c.config_resolved._use_default_values as string[])].sort());
    for (const n of STEPS) {
      s.setTimesteps(n);
      const ts = c.timesteps[n];
      expect(s.timesteps.length).toBe(ts.length);
      ts.forEach((r, i) => expect(Math.abs(s.timesteps[i] - r)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(r))));
      expect(s.initNoiseSigma).toBeCloseTo(c.init_noise_sigma[n], 6);
      const ref = c.sigmas[n];
      if (ref) {
        expect(s.sigmas!.length).toBe(ref.length);
        ref.forEach((r, i) => expect(Math.abs(s.sigmas![i] - r)).toBeLessThanOrEqual(1e-6 * Math.abs(r)));
      }
      for (const [k, v] of Object.entries(c.config_after_set_timesteps[n] ?? {})) expect([k, s.config[k]]).toEqual([k, v]);
    }
    s.dispose();
  });

  test.each(STEPS)('trajectory N=%i matches diffusers per step (rel-L2 ≤ 1e-5)', async (n) => {
    const ref = await loadFixture(`ext2/schedulers/${name}.safetensors`);
    const get = (k: string): tf.Tensor | undefined => ref[`n${n}.${k}`];
    const s: Scheduler = schedulerFromConfig(c.config_passed, c.class);
    s.setTimesteps(n);
    if (ref.alphas_cumprod) {
      // The training schedule is reproduced bit for bit (torch's float32 linspace and cumprod).
      expect(Array.from((s as unknown as { alphasCumprod: Float32Array }).alphasCumprod)).toEqual(Array.from(ref.alphas_cumprod.dataSync()));
    }
    const rows = (k: string): tf.Tensor[] => (get(k) ? tf.unstack(get(k)!) : []);
    const [prevRef, x0Ref, miRef, noise] = [rows('prev_sample'), rows('pred_original_sample'), rows('model_input'), rows('noise')];
    const noiseStep = get('noise_step') ? Array.from(get('noise_step')!.dataSync()) : [];
    expect(prevRef.length).toBe(s.timesteps.length);
    let x = tf.mul(get('x_T_raw')!, s.initNoiseSigma);
    const before = tf.memory().numTensors;
    expect(relL2T(x, get('x_T')!)).toBeLessThanOrEqual(1e-6);
    s.timesteps.forEach((t, i) => {
      const mi = s.scaleModelInput(x, t);
      const e = [relL2T(mi, miRef[i])];
      const eps = fakeModel(mi, t);
      const k = noiseStep.indexOf(i);
      const out = s.step(eps, t, x, { noise: k >= 0 ? noise[k] : undefined });
      e.push(relL2T(out.prevSample, prevRef[i]));
      if (x0Ref.length) e.push(relL2T(out.predOriginalSample!, x0Ref[i]));
      for (const v of e) expect(v).toBeLessThanOrEqual(1e-5);
      note(name, Math.max(...e));
      if (mi !== x) mi.dispose();
      tf.dispose([eps, x]);
      if (out.predOriginalSample !== out.prevSample) out.predOriginalSample?.dispose();
      x = out.prevSample;
    });
    x.dispose();
    s.dispose();
    expect(tf.memory().numTensors).toBe(before - 1);
    tf.dispose([...prevRef, ...x0Ref, ...miRef, ...noise, ...Object.values(ref)]);
  });
});

describe('add_noise', () => {
  const rows = Object.entries(INDEX.add_noise).flatMap(([name, c]) => [
    [name, 'plain', c] as const,
    ...(c.begin_index_variant ? [[name, 'begin_index', c] as const] : []),
    ...(c.after_step_variant ? [[name, 'after_step', c] as const] : []),
  ]);

  test.each(rows)('%s (%s) matches diffusers (rel-L2 ≤ 1e-6)', async (name, variant, c) => {
    const ref = await loadFixture('ext2/schedulers/add_noise.safetensors');
    const s = schedulerFromConfig(c.config, c.class);
    if (c.set_timesteps) s.setTimesteps(c.set_timesteps);
    const ts = Array.from(ref[`${name}.timesteps`].dataSync());
    let key = `${name}.out`;
    if (variant === 'begin_index') {
      s.setBeginIndex!(c.begin_index_variant!.begin_index);
      key = c.begin_index_variant!.key;
    } else if (variant === 'after_step') {
      s.setBeginIndex!(0);
      const z = tf.zerosLike(ref.original);
      const out = s.step(z, s.timesteps[0], ref.original);
      tf.dispose([z, out.prevSample, out.predOriginalSample]);
      key = c.after_step_variant!.key;
    }
    const before = tf.memory().numTensors;
    const noised = s.addNoise(ref.original, ref.noise, ts);
    expect(tf.memory().numTensors).toBe(before + 1);
    const e = relL2T(noised, ref[key]);
    note(`add_noise ${name} ${variant}`, e);
    expect(e).toBeLessThanOrEqual(1e-6);
    tf.dispose([noised, ...Object.values(ref)]);
    s.dispose();
  });

  test('a single timestep broadcasts to every row; bad timesteps and shapes are errors', () => {
    const x = tf.ones([2, 4, 2, 2]);
    const ddim = schedulerFromConfig(INDEX.add_noise.ddim.config, 'DDIMScheduler');
    const one = ddim.addNoise(x, x, 500);
    const two = ddim.addNoise(x, x, [500, 500]);
    expect(relL2T(one, two)).toBe(0);
    expect(() => ddim.addNoise(x, x, [1, 2, 3])).toThrow(/3 timesteps for a batch of 2/);
    expect(() => ddim.addNoise(x, x, 1000)).toThrow(/integer training timestep in 0…999/);
    expect(() => ddim.addNoise(x, tf.ones([1, 4, 2, 2]), 5)).toThrow(/same shape/);
    const euler = schedulerFromConfig(INDEX.add_noise.euler.config, 'EulerDiscreteScheduler');
    euler.setTimesteps(10);
    expect(() => euler.addNoise(x, x, 123.5)).toThrow(/timestep 123.5 is not in the current schedule/);
    // The DPM family falls back to the last step, as diffusers does.
    const dpm = schedulerFromConfig(INDEX.add_noise.dpmpp2m.config, 'DPMSolverMultistepScheduler');
    dpm.setTimesteps(10);
    const last = dpm.addNoise(x, x, dpm.timesteps[9]);
    const missing = dpm.addNoise(x, x, 123);
    expect(relL2T(missing, last)).toBe(0);
    tf.dispose([x, one, two, last, missing]);
  });
});

describe('diffusers 0.30.3 NaN traps are rejected with an error naming the fix', () => {
  test('UniPC bh1 with final_sigmas_type "zero" (all-NaN last step in diffusers)', () => {
    const p = INDEX.probe_unipc_bh1_final_sigma_zero;
    for (const n of Object.keys(p.non_finite_steps)) expect(p.non_finite_steps[n].length).toBeGreaterThan(0);
    expect(() => schedulerFromConfig(p.config, 'UniPCMultistepScheduler')).toThrow(/bh1.*final_sigmas_type "zero".*NaN.*sigma_min/);
    expect(() => schedulerFromConfig({ ...p.config, final_sigmas_type: 'sigma_min' }, 'UniPCMultistepScheduler')).not.toThrow();
  });

  test('DPM-Solver singlestep order 3 onto sigma 0: exactly the N diffusers makes non-finite are rejected', () => {
    const p = INDEX.probe_dpm_singlestep_order3_final_sigma_zero;
    const s = schedulerFromConfig(p.config, 'DPMSolverSinglestepScheduler');
    for (const [n, bad] of Object.entries(p.non_finite_steps)) {
      if (bad.length) expect(() => s.setTimesteps(Number(n))).toThrow(/order-2 step onto sigma 0.*sigma_min/);
      else expect(() => s.setTimesteps(Number(n))).not.toThrow();
    }
    s.dispose();
  });
});

afterAll(() => {
  console.log('ext2 worst rel-L2 per case (all steps, N = 7/13/25):\n' + Object.entries(worst).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join('\n'));
});
