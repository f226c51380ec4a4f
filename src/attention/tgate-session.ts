/** Installs TGATE on a denoiser for one generation and removes it (and its caches) afterwards. */
import type { Module } from '../nn/module.js';
import { attnProcessors, setAttnProcessor } from './registry.js';
import { resolveTgate, TgateProcessor, type ResolvedTgate, type TgateOptions } from './tgate.js';
import { AutoGate } from './auto-gate.js';

export interface TgateSession {
  settings: ResolvedTgate | null;
  /** With gateStep 'auto': the controller (its `gateStep` and `changes` tell what it decided). */
  autoGate?: AutoGate;
  /** Restores the denoiser's previous processors and frees every cache. */
  end(): void;
}

/**
 * Validates the options and swaps in a fresh TgateProcessor. `doCfg` and `lcm` must agree: LCM mode keeps
 * batch-shaped caches, which only works when guidance never runs (T-GATE crashes otherwise).
 */
export function beginTgate(denoiser: Module, opts: TgateOptions | undefined | null, numInferenceSteps: number, doCfg: boolean): TgateSession {
  if (!opts) return { settings: null, end: () => {} };
  const settings = resolveTgate(opts, numInferenceSteps);
  if (settings.lcm && doCfg) {
    throw new Error('tgate.lcm is only valid without classifier-free guidance: set guidanceScale ≤ 1 (or use a UNet with time_cond_proj_dim), or drop lcm');
  }
  const saved = Object.fromEntries(attnProcessors(denoiser));
  const proc = new TgateProcessor();
  setAttnProcessor(denoiser, proc);
  let autoGate: AutoGate | undefined;
  if (settings.auto) {
    autoGate = new AutoGate({ threshold: settings.auto.threshold });
    autoGate.install(denoiser);
    settings.auto.controller = autoGate;
  }
  return {
    settings,
    autoGate,
    end: () => {
      autoGate?.dispose();
      proc.reset();
      setAttnProcessor(denoiser, saved);
    },
  };
}
