/** Installs TGATE on a denoiser (and its ControlNets) for one generation and removes it (and its caches) afterwards. */
import type { Module } from '../nn/module.js';
import { attnProcessors, setAttnProcessor } from './registry.js';
import { resolveTgate, TgateProcessor, type ResolvedTgate, type TgateOptions } from './tgate.js';
import { AutoGate } from './auto-gate.js';
import type { AttnProcessor } from './processor.js';

export interface TgateSession {
  settings: ResolvedTgate | null;
  /** With gateStep 'auto': the controller (its `gateStep` and `changes` tell what it decided). */
  autoGate?: AutoGate;
  /** Restores every model's previous processors and frees every cache. */
  end(): void;
}

/**
 * Validates the options and swaps in a fresh TgateProcessor on the denoiser and on each of `companions` (the
 * ControlNets, whose attentions are gated by the same per-step flags). `doCfg` and `lcm` must agree: LCM mode
 * keeps batch-shaped caches, which only works when guidance never runs (T-GATE crashes otherwise).
 *
 * The automatic gate measures the denoiser's cross-attention only: the gate is where guidance is dropped from
 * the denoiser's prediction, a ControlNet's attention reaches it only through residuals scaled by
 * conditioning scale × keep (0 outside the control guidance window), and in guess mode a ControlNet sees
 * only the conditional half, so its changes do not measure the same thing.
 */
export function beginTgate(
  denoiser: Module, opts: TgateOptions | undefined | null, numInferenceSteps: number, doCfg: boolean, companions: Module[] = [],
): TgateSession {
  if (!opts) return { settings: null, end: () => {} };
  const settings = resolveTgate(opts, numInferenceSteps);
  if (settings.lcm && doCfg) {
    throw new Error('tgate.lcm is only valid without classifier-free guidance: set guidanceScale ≤ 1 (or use a UNet with time_cond_proj_dim), or drop lcm');
  }
  const models = [denoiser, ...companions];
  const saved = models.map((m) => Object.fromEntries(attnProcessors(m)) as Record<string, AttnProcessor>);
  // One processor: its caches are per attention module, so the models never share an entry.
  const proc = new TgateProcessor();
  models.forEach((m) => setAttnProcessor(m, proc));
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
      models.forEach((m, i) => setAttnProcessor(m, saved[i]));
    },
  };
}
