/** Samplers (diffusers schedulers) and `schedulerFromConfig`, which builds one from a `scheduler_config.json`. */
import type { Scheduler } from './base.js';
import { ConfigError, ConfigReader } from '../io/config.js';
import { DDIMScheduler } from './ddim.js';
import { DEISMultistepScheduler } from './deis-multistep.js';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { DPMSolverSinglestepScheduler } from './dpm-solver-singlestep.js';
import { EDMDPMSolverMultistepScheduler } from './edm-dpm-solver-multistep.js';
import { EDMEulerScheduler } from './edm-euler.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';
import { LCMScheduler } from './lcm.js';
import { PNDMScheduler } from './pndm.js';
import { UniPCMultistepScheduler } from './unipc-multistep.js';

export type { Scheduler, StepOptions, StepOutput } from './base.js';
export { Rng } from './rng.js';
export { TorchGenerator, type NoiseSource } from './torch-generator.js';
export {
  DDIMScheduler, DEISMultistepScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler,
  EDMDPMSolverMultistepScheduler, EDMEulerScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
  LCMScheduler, PNDMScheduler, UniPCMultistepScheduler,
};

type SchedulerClass = new (config?: Record<string, unknown>) => Scheduler;

/** Every sampler: diffusers class name, constructor and a one-line description (for `--list-schedulers`). */
export const SCHEDULER_LIST: readonly { name: string; ctor: SchedulerClass; description: string }[] = [
  { name: 'DDIMScheduler', ctor: DDIMScheduler, description: 'DDIM: deterministic (eta 0) or stochastic first-order steps' },
  { name: 'PNDMScheduler', ctor: PNDMScheduler, description: 'PNDM: Runge–Kutta warm-up then linear multistep (PLMS); SD-1.5 ships it' },
  { name: 'EulerDiscreteScheduler', ctor: EulerDiscreteScheduler, description: 'Euler: first-order ODE steps on the sigma schedule (Karras sigmas optional); SDXL ships it' },
  { name: 'EulerAncestralDiscreteScheduler', ctor: EulerAncestralDiscreteScheduler, description: 'Euler ancestral: Euler steps plus fresh noise each step (stochastic)' },
  { name: 'DPMSolverMultistepScheduler', ctor: DPMSolverMultistepScheduler, description: 'DPM-Solver(++) multistep, orders 1–3, SDE variants; "DPM++ 2M (Karras)"' },
  { name: 'DPMSolverSinglestepScheduler', ctor: DPMSolverSinglestepScheduler, description: 'DPM-Solver(++) singlestep, orders 1–3; "DPM++ 2S"' },
  { name: 'UniPCMultistepScheduler', ctor: UniPCMultistepScheduler, description: 'UniPC predictor–corrector (bh1, bh2): good images in 5–10 steps' },
  { name: 'DEISMultistepScheduler', ctor: DEISMultistepScheduler, description: 'DEIS: exponential integrator in log-rho, orders 1–3' },
  { name: 'LCMScheduler', ctor: LCMScheduler, description: 'LCM: consistency-model sampling for LCM / LCM-LoRA models (2–8 steps)' },
  { name: 'EDMEulerScheduler', ctor: EDMEulerScheduler, description: 'EDM Euler: Euler on the EDM (Karras) schedule with EDM preconditioning' },
  { name: 'EDMDPMSolverMultistepScheduler', ctor: EDMDPMSolverMultistepScheduler, description: 'EDM DPM-Solver++ multistep; Playground v2.5 ships it' },
];

/** Constructors by diffusers class name. */
export const SCHEDULERS: Record<string, SchedulerClass> = Object.fromEntries(SCHEDULER_LIST.map((s) => [s.name, s.ctor]));

/**
 * Builds a scheduler from a diffusers config (`_class_name` + keys), like `Cls.from_config(config)`.
 * @param className overrides `config._class_name` (diffusers' `OtherCls.from_config(pipe.scheduler.config)`).
 * @param file the config's file (scheduler_config.json), named in errors.
 * Unknown keys are kept but not used; an unknown class or a bad option value throws a ConfigError naming the key
 * and value (and the file when given).
 */
export function schedulerFromConfig(config: Record<string, unknown>, className?: string, file?: string): Scheduler {
  ConfigReader.of(config, className ?? 'scheduler', file);
  const name = className ?? config._class_name;
  const Ctor = typeof name === 'string' && Object.hasOwn(SCHEDULERS, name) ? SCHEDULERS[name] : undefined;
  if (!Ctor) {
    throw new ConfigError(`${file ? `${file}: ` : ''}unsupported scheduler _class_name=${JSON.stringify(name)} (supported: ${Object.keys(SCHEDULERS).join(', ')})`,
      file, 'scheduler', '_class_name');
  }
  try {
    return new Ctor(config);
  } catch (e) {
    throw file && e instanceof ConfigError ? e.inFile(file) : e;
  }
}
