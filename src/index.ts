/** tgate-tfjs public API: re-exports only. */
export { initBackend, probeBackends, autoOrder, releaseWebgpuBufferPool, BACKENDS } from './backend.js';
export { WASM_HEAP_LIMIT_BYTES, WasmHeapError } from './backend-wasm.js';
export type { BackendName, BackendChoice, BackendOptions, BackendReport } from './backend.js';

export { SafetensorsFile, SafetensorsError, BufferSource, HttpRangeSource, encodeSafetensors } from './io/safetensors.js';
export type { ByteSource, TensorInfo, SafetensorsDtype } from './io/safetensors.js';
export { openWeights, loadComponent, readConfig, readModelIndex } from './io/component-source.js';
export { TfjsWeightSource } from './io/tfjs-format.js';

export { Module, ModuleList, Parameter, StateDictError } from './nn/module.js';
export type { WeightSource, ParamLayout } from './nn/module.js';
export { offloadWeights, offloadHandle } from './nn/offload.js';
export type { OffloadOptions, OffloadHandle } from './nn/offload.js';
export { setGemmStrategy, getGemmStrategy, type GemmStrategy } from './layers/gemm.js';
export { setWebgpuFusedKernels } from './layers/webgpu-kernels.js';
export { weightInOurLayout } from './layers/streamed-weights.js';

export { UNet2DConditionModel, CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel, AutoencoderKL, PixArtTransformer2DModel, modelFromConfig, modelClasses } from './models/registry.js';

export { Attention } from './layers/attention.js';
export { scaledDotProductAttention } from './attention/sdpa.js';
export { AttnProcessorDefault, AttnProcessorChunked } from './attention/processor.js';
export type { AttnProcessor, AttnContext } from './attention/processor.js';
export { attnProcessors, setAttnProcessor } from './attention/registry.js';
export { TgateProcessor, tgateFlags, resolveTgate } from './attention/tgate.js';
export { AttentionStoreProcessor } from './attention/attention-store.js';
export { AutoGate, AUTO_GATE_THRESHOLD } from './pipelines/auto-gate.js';
export type { TgateOptions, TgateFlags } from './attention/tgate.js';

export { schedulerFromConfig, SCHEDULERS, SCHEDULER_LIST, Rng, TorchGenerator } from './samplers/index.js';
export type { NoiseSource } from './samplers/index.js';
export type { Scheduler, StepOptions, StepOutput } from './samplers/index.js';

export { CLIPTokenizer, T5Tokenizer, loadTokenizer } from './tokenizers/index.js';
export type { Tokenizer } from './tokenizers/index.js';

export { loadPipeline, loadModel } from './pipelines/load.js';
export type { Pipeline, LoadOptions } from './pipelines/load.js';
export { StableDiffusionPipeline } from './pipelines/stable-diffusion.js';
export type { SDGenerateOptions, GenerateResult, GenerateOptionsBase } from './pipelines/stable-diffusion.js';
export { StableDiffusionXLPipeline } from './pipelines/stable-diffusion-xl.js';
export type { SDXLGenerateOptions } from './pipelines/stable-diffusion-xl.js';
export { PixArtAlphaPipeline } from './pipelines/pixart-alpha.js';
export type { PixArtGenerateOptions } from './pipelines/pixart-alpha.js';
export { DeepCache } from './pipelines/deepcache.js';
export type { DeepCacheOptions } from './pipelines/deepcache.js';
export type { StepInfo } from './pipelines/denoise.js';
export type { RGBImage } from './pipelines/common.js';
