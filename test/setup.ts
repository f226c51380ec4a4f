// Every test file starts on the cpu backend; files that test other backends switch explicitly.
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { installFastCpuKernels } from '../src/backend-cpu-fast.js';
import { quietCpuBackend } from '../src/backend.js';
installFastCpuKernels();
await tf.setBackend('cpu');
quietCpuBackend();
