// Every test file starts on the cpu backend; files that test other backends switch explicitly.
import os from 'node:os';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { installFastCpuKernels, quietCpuBackend } from '../src/backends/index.js';
installFastCpuKernels();
await tf.setBackend('cpu');
quietCpuBackend();
// Jest runs two files at once: give each wasm backend its share of the CPUs, not all of them (oversubscribed,
// XNNPACK's pool threads spin against each other). wasm-backend.test.ts asks for 2 threads explicitly.
process.env.TGATE_WASM_THREADS ??= String(Math.max(1, Math.min(8, Math.floor(os.availableParallelism() / 2))));
