/**
 * diffusers PixArtSigmaPipeline: PixArt-α's pipeline with a 300-token T5 context by default and no
 * resolution / aspect-ratio conditions (Σ's transformer has `use_additional_conditions: false`; the pipeline
 * always passes none). TGATE as T-GATE's PixArt_Sigma.py.
 */
import { PixArtAlphaPipeline, type PixArtGenerateOptions } from './pixart-alpha.js';
import type { GenerateResult } from './session.js';

export class PixArtSigmaPipeline extends PixArtAlphaPipeline {
  protected override readonly defaultMaxSequenceLength: number = 300;

  protected override get name(): string { return 'PixArtSigmaPipeline'; }

  protected override additionalConditions(): boolean {
    return false;
  }

  override async generate(o: PixArtGenerateOptions): Promise<GenerateResult> {
    if (this.transformer.config.useAdditionalConditions) {
      throw new Error('PixArtSigmaPipeline: the transformer has use_additional_conditions true, but the Σ pipeline passes no resolution conditions: set "use_additional_conditions": false in transformer/config.json (PixArt-Σ checkpoints do)');
    }
    return super.generate(o);
  }
}
