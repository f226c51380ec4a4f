/**
 * Running our own WGSL programs through tfjs-backend-webgpu: it compiles and caches the pipeline, binds the
 * inputs' buffers and a uniform block, and hands back a tensor it owns like any other.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';

export type Uniform = { type: 'int32' | 'float32'; data: number[] };

interface WebgpuBackend {
  runWebGPUProgram(p: WebGPUProgram, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: Uniform[]): tf.TensorInfo;
}

/** Runs `program` on `inputs` (bound in the order of its variableNames) and returns its float32 output. */
export function run(program: WebGPUProgram, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  const backend = tf.backend() as unknown as WebgpuBackend;
  const info = backend.runWebGPUProgram(program, inputs, 'float32', uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Int32 uniforms, one per value. */
export function ints(...values: number[]): Uniform[] {
  return values.map((d): Uniform => ({ type: 'int32', data: [d] }));
}

/**
 * A program with its own workgroup layout: `groups` workgroups of `workgroupSize` invocations over a flat
 * output of `size` elements. The body defines `fn main(index : i32)`; it reads workgroupId / localId (the
 * index tfjs passes is meaningless here). Workgroup counts must fit one dispatch dimension each (65535).
 */
export function tiledProgram(
  key: string, size: number, variableNames: string[], uniforms: string, workgroupSize: number,
  groups: [number, number, number], body: string,
): WebGPUProgram {
  return {
    shaderKey: key, outputShape: [size], variableNames, uniforms, workgroupSize: [workgroupSize, 1, 1],
    dispatchLayout: { x: [0] }, dispatch: groups, getUserCode: () => body,
  };
}

/** Largest workgroup count of one dispatch dimension that WebGPU guarantees. */
export const MAX_GROUPS = 65535;
