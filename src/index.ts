/** tgate-tfjs public API: re-exports only. */
export {
  initBackend, probeBackends, autoOrder, releaseWebgpuBufferPool, BACKENDS, WASM_HEAP_LIMIT_BYTES, WasmHeapError,
  setWebgpuFusedKernels, setBufferLimit, deviceLimits, checkGenerationFits, trackWebgpuBindings,
} from './backends/index.js';
export type { BackendName, BackendChoice, BackendOptions, BackendReport, DeviceLimits, SizePlanInput, BindingStats } from './backends/index.js';

export { SafetensorsFile, SafetensorsError, BufferSource, HttpRangeSource, encodeSafetensors } from './io/safetensors.js';
export type { ByteSource, HttpRangeOptions, TensorInfo, SafetensorsDtype } from './io/safetensors.js';
export { openWeights, readConfig, readModelIndex } from './io/component-source.js';
export { TfjsWeightSource } from './io/tfjs-format.js';
export { DEFAULT_TIMEOUT_MS } from './io/http-fetch.js';
export type { NetOptions } from './io/http-fetch.js';

export { Module, ModuleList, Parameter, StateDictError } from './nn/module.js';
export type { WeightSource, ParamLayout } from './nn/module.js';
export type { WeightDtype } from './nn/packed-weight.js';
export { offloadWeights, offloadHandle } from './nn/offload.js';
export type { OffloadOptions, OffloadHandle } from './nn/offload.js';
export { setGemmStrategy, getGemmStrategy, type GemmStrategy } from './layers/gemm.js';
export { weightInOurLayout } from './nn/streamed-weights.js';

export {
  UNet2DConditionModel, ControlNetModel, CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel, AutoencoderKL, PixArtTransformer2DModel,
  MODEL_SPECS, modelSpecs, modelFromConfig, runModel,
} from './models/registry.js';
export type { ModelSpec, NamedTensors, RunOptions } from './models/registry.js';
export { loadModel } from './models/load.js';
export { controlnetConfigFromUnet } from './models/controlnet.js';
export type { ControlNetForwardOptions, ControlNetOutput, ControlNetConfig } from './models/controlnet.js';

export { LoraSet, applyLora } from './lora/lora-set.js';
export type { LoadLoraOptions, LoraInfo } from './lora/lora-set.js';
export { LoraError } from './lora/lora-file.js';
export type { LoraFormat } from './lora/lora-file.js';
export type { LoraSource } from './lora/source.js';
export { ConfigError } from './io/config.js';

export { Attention } from './attention/attention.js';
export { scaledDotProductAttention } from './attention/sdpa.js';
export { AttentionModule, AttnProcessorDefault, AttnProcessorChunked } from './attention/processor.js';
export type { AttnProcessor, AttnContext, AttnProjections } from './attention/processor.js';
export { attnProcessors, setAttnProcessor, wrapProcessors } from './attention/registry.js';
export type { ProcessorWrapper } from './attention/registry.js';
export { TgateProcessor, tgateFlags, resolveTgate } from './attention/tgate.js';
export { AttentionStoreProcessor } from './attention/attention-store.js';
export { AutoGate, AUTO_GATE_THRESHOLD } from './attention/auto-gate.js';
export type { TgateOptions, TgateFlags } from './attention/tgate.js';

export { schedulerFromConfig, SCHEDULERS, SCHEDULER_LIST, Rng, TorchGenerator } from './samplers/index.js';
export type { NoiseSource } from './samplers/index.js';
export type { Scheduler, StepOptions, StepOutput } from './samplers/index.js';

export { CLIPTokenizer, T5Tokenizer, loadTokenizer } from './tokenizers/index.js';
export type { Tokenizer } from './tokenizers/index.js';

export { loadPipeline } from './pipelines/load.js';
export type { Pipeline, LoadOptions, ControlNetSource } from './pipelines/load.js';
export { controlnetKeep } from './pipelines/controlnet-step.js';
export type { ControlNetGenerateOptions } from './pipelines/controlnet-step.js';
export { StableDiffusionPipeline } from './pipelines/stable-diffusion.js';
export type { SDGenerateOptions, GenerateResult, GenerateOptionsBase } from './pipelines/stable-diffusion.js';
export { StableDiffusionXLPipeline } from './pipelines/stable-diffusion-xl.js';
export type { SDXLGenerateOptions } from './pipelines/stable-diffusion-xl.js';
export { PixArtAlphaPipeline } from './pipelines/pixart-alpha.js';
export type { PixArtGenerateOptions } from './pipelines/pixart-alpha.js';
export { PixArtSigmaPipeline } from './pipelines/pixart-sigma.js';
export type { SDXLSizeOptions } from './pipelines/sdxl-time-ids.js';
export { strengthSteps } from './pipelines/start.js';
export type { ImageInput } from './pipelines/images.js';
export { DeepCache } from './pipelines/deepcache.js';
export type { DeepCacheOptions } from './pipelines/deepcache.js';
export type { StepInfo, GenerationProgress } from './pipelines/denoise.js';
export { encodePNG, decodePNG, savePNG, MAX_PNG_PIXELS } from './io/png.js';
export type { RGBImage } from './io/png.js';
export { demoModelDir } from './io/demo-model.js';
