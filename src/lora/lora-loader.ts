/**
 * The LoRA methods of a pipeline, as diffusers' LoraLoaderMixin gives them: a pipeline extends this class and
 * says which model each component prefix of a LoRA file (`unet`, `text_encoder`, …) names; the logic lives in
 * {@link LoraSet}.
 */
import type { Module } from '../nn/module.js';
import { LoraSet, type LoadLoraOptions, type LoraInfo } from './lora-set.js';
import type { LoraSource } from './source.js';

export abstract class LoraLoader {
  /** The LoRA adapters on this pipeline's models. */
  readonly lora: LoraSet = new LoraSet(() => this.loraComponents());

  /** The models a LoRA file's component prefixes name (a component not loaded may be null). */
  protected abstract loraComponents(): Record<string, Module | null>;

  /**
   * Loads a LoRA (diffusers/PEFT or kohya safetensors: path, URL or bytes) at `opts.scale`; generation applies
   * it at once (unfused) and {@link fuseLora} writes it into the weights. Several adapters add up.
   */
  loadLora(source: LoraSource, opts?: LoadLoraOptions): Promise<LoraInfo> { return this.lora.load(source, opts); }
  /** Writes the loaded adapters (or the named ones) into the weights: generation then costs nothing extra. */
  fuseLora(names?: string[]): Promise<void> { return this.lora.fuse(names); }
  /** Restores the original weights bit for bit; the adapters apply unfused again. */
  unfuseLora(): Promise<void> { return this.lora.unfuse(); }
  /** Removes one adapter (default: all), restoring what it had fused. */
  unloadLora(name?: string): Promise<void> { return this.lora.unload(name); }
  /** The loaded adapters: name, scale, whether fused, format, source, layers adapted per component. */
  listLoras(): LoraInfo[] { return this.lora.list(); }
}
