/** Options and defaults every command shares: the backend choice and the bundled demo model. */
import { BACKENDS, initBackend, type BackendChoice } from '../backends/index.js';

export const backendOption = {
  backend: { choices: ['auto', ...BACKENDS], default: 'auto', describe: 'TF.js backend' },
  threads: { type: 'number', describe: 'wasm: XNNPACK threads, 1-8 (default: every CPU; env TGATE_WASM_THREADS)' },
} as const;

/** `--weight-dtype`: how the loaded weights are held (float16: packed halves, WebGPU only). */
export const weightDtypeOption = {
  'weight-dtype': {
    choices: ['float32', 'float16'], default: 'float32',
    describe: 'float16: Linear/Conv2d/Embedding weights held as halves with float32 arithmetic (half the memory; webgpu only)',
  },
} as const;

export async function setupBackend(choice: string, wasmThreads?: number): Promise<void> {
  await initBackend(choice as BackendChoice, { wasmThreads });
}

export { demoModelDir } from '../io/demo-model.js';
