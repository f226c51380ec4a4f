/** Samplers (diffusers schedulers) and `schedulerFromConfig`, which builds one from a `scheduler_config.json`. */
import type { Scheduler } from './base.js';
import { DDIMScheduler } from './ddim.js';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';
import { LCMScheduler } from './lcm.js';
import { PNDMScheduler } from './pndm.js';

export type { Scheduler, StepOptions, StepOutput } from './base.js';
export { Rng } from './rng.js';
export { TorchGenerator, type NoiseSource } from './torch-generator.js';
export {
  DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, LCMScheduler,
  PNDMScheduler,
};

/** Constructors by diffusers class name. */
export const SCHEDULERS: Record<string, new (config?: Record<string, unknown>) => Scheduler> = {
  DDIMScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  LCMScheduler,
};

/**
 * Builds a scheduler from a diffusers config (`_class_name` + keys), like `Cls.from_config(config)`.
 * @param className overrides `config._class_name` (diffusers' `OtherCls.from_config(pipe.scheduler.config)`).
 * Unknown keys are ignored; an unknown class or an unsupported option value throws, naming the key and value.
 */
export function schedulerFromConfig(config: Record<string, unknown>, className?: string): Scheduler {
  const name = className ?? config._class_name;
  const Ctor = typeof name === 'string' ? SCHEDULERS[name] : undefined;
  if (!Ctor) {
    throw new Error(`unsupported scheduler _class_name=${JSON.stringify(name)} (supported: ${Object.keys(SCHEDULERS).join(', ')})`);
  }
  return new Ctor(config);
}
