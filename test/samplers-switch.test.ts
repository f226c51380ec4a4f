/**
 * diffusers' `from_config` switch between samplers, over every ordered pair: a config from any class builds any
 * other (which runs, finite), and switching back gives the first one's behaviour exactly — same resolved config,
 * schedule and trajectory. Works because `_use_default_values` travels with the config (diffusers drops those
 * keys on a switch, so each class keeps its own defaults) while every key set explicitly is kept.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { fixture } from './support/helpers.js';
import { Rng, SCHEDULER_LIST, schedulerFromConfig, type Scheduler } from '../src/samplers/index.js';

const SD = (JSON.parse(readFileSync(fixture('schedulers', 'index.json'), 'utf8').replace(/(-?)Infinity/g, '"$1Infinity"')) as {
  cases: Record<string, { config_passed: Record<string, unknown> }>;
}).cases.ddim_sd.config_passed;

/**
 * One non-default source config per class. Values diffusers rewrites on a switch are avoided on purpose (UniPC
 * "bh1", DPM-Solver "heun"/"dpmsolver", DEIS names): those are rewritten in the config by the receiving class, so
 * in diffusers too they do not survive a round trip (see the test at the end).
 */
const SOURCES: Record<string, Record<string, unknown>> = {
  DDIMScheduler: { ...SD, prediction_type: 'v_prediction', timestep_spacing: 'trailing', clip_sample: true },
  PNDMScheduler: { ...SD, skip_prk_steps: false },
  EulerDiscreteScheduler: { ...SD, use_karras_sigmas: true, sigma_min: 0.1, sigma_max: 10, final_sigmas_type: 'sigma_min' },
  EulerAncestralDiscreteScheduler: { ...SD, prediction_type: 'v_prediction' },
  DPMSolverMultistepScheduler: { ...SD, solver_order: 3, use_lu_lambdas: true, thresholding: true, sample_max_value: 2 },
  DPMSolverSinglestepScheduler: { ...SD, solver_order: 3, final_sigmas_type: 'sigma_min' },
  UniPCMultistepScheduler: { ...SD, solver_order: 3, use_karras_sigmas: true, final_sigmas_type: 'sigma_min', disable_corrector: [0] },
  DEISMultistepScheduler: { ...SD, solver_order: 3, use_karras_sigmas: true },
  LCMScheduler: { ...SD, original_inference_steps: 100, timestep_scaling: 5 },
  EDMEulerScheduler: { sigma_schedule: 'exponential', sigma_max: 60, sigma_data: 0.6 },
  EDMDPMSolverMultistepScheduler: {
    algorithm_type: 'dpmsolver++', dynamic_thresholding_ratio: 0.995, euler_at_final: false, final_sigmas_type: 'zero',
    lower_order_final: true, num_train_timesteps: 1000, prediction_type: 'epsilon', rho: 7.0, sample_max_value: 1.0,
    sigma_data: 0.5, sigma_max: 80.0, sigma_min: 0.002, solver_order: 2, solver_type: 'midpoint', thresholding: false,
  },
};
const NAMES = SCHEDULER_LIST.map((s) => s.name);
const STEPS = 7;

/** A short run with the fixtures' fake model and one fixed noise tensor for every stochastic step. */
function run(s: Scheduler, x0: tf.Tensor, noise: tf.Tensor): tf.Tensor {
  s.setTimesteps(STEPS);
  let x = tf.mul(x0, s.initNoiseSigma);
  for (const t of s.timesteps) {
    const mi = s.scaleModelInput(x, t);
    const eps = tf.tidy(() => tf.add(tf.mul(mi, 0.1), Math.fround(0.05 * Math.sin(t / 100))));
    const out = s.step(eps, t, x, { noise });
    if (mi !== x) mi.dispose();
    tf.dispose([eps, x]);
    if (out.predOriginalSample !== out.prevSample) out.predOriginalSample?.dispose();
    if (out.denoised !== out.prevSample) out.denoised?.dispose();
    x = out.prevSample;
  }
  return x;
}

const defaultKeys = (s: Scheduler): string[] => s.config._use_default_values as string[];

test('every class has a source config', () => expect(Object.keys(SOURCES).sort()).toEqual([...NAMES].sort()));

describe.each(NAMES)('from %s', (from) => {
  test.each(NAMES)('to %s and back', (to) => {
    const x0 = new Rng(11).randn([1, 4, 8, 8]);
    const noise = new Rng(12).randn([1, 4, 8, 8]);
    const before = tf.memory().numTensors;
    const a = schedulerFromConfig(SOURCES[from], from);
    const b = schedulerFromConfig(a.config, to);
    const back = schedulerFromConfig(b.config, from);
    // The switched-to class takes the keys the source set explicitly (its own defaults otherwise) and runs.
    expect(b.config._class_name).toBe(to);
    for (const k of Object.keys(SOURCES[from])) {
      if (k in b.config && !defaultKeys(b).includes(k) && !['algorithm_type', 'solver_type'].includes(k)) expect([k, b.config[k]]).toEqual([k, a.config[k]]);
    }
    const xb = run(b, x0, noise);
    expect(tf.tidy(() => tf.all(tf.isFinite(xb)).dataSync()[0])).toBe(1);
    // Back again: the resolved config, the schedule and the trajectory are the source's.
    expect(back.config).toEqual(expect.objectContaining(Object.fromEntries(Object.entries(a.config).filter(([k]) => k !== '_use_default_values'))));
    expect([...defaultKeys(back)].sort()).toEqual([...defaultKeys(a)].sort());
    const xa = run(a, x0, noise);
    const xBack = run(back, x0, noise);
    expect(back.timesteps).toEqual(a.timesteps);
    expect(back.sigmas).toEqual(a.sigmas);
    expect(back.initNoiseSigma).toBe(a.initNoiseSigma);
    expect(Array.from(xBack.dataSync())).toEqual(Array.from(xa.dataSync()));
    tf.dispose([xa, xb, xBack]);
    [a, b, back].forEach((s) => s.dispose());
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x0, noise]);
  });
});

test('as in diffusers, a value the receiving class rewrites does not survive the trip (UniPC bh1 → DPM-Solver → UniPC)', () => {
  const unipc = schedulerFromConfig({ ...SD, solver_type: 'bh1', final_sigmas_type: 'sigma_min' }, 'UniPCMultistepScheduler');
  const dpm = schedulerFromConfig(unipc.config, 'DPMSolverMultistepScheduler');
  expect(dpm.config.solver_type).toBe('midpoint');
  expect(schedulerFromConfig(dpm.config, 'UniPCMultistepScheduler').config.solver_type).toBe('bh2');
});
