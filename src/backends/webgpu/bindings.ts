/** Guarding weights against WebGPU's per-binding size limit, where an oversized binding fails silently. */
import * as tf from '@tensorflow/tfjs-core';
import { deviceLimits } from '../limits.js';

/**
 * Returns `w`, or throws when it is larger than this device lets one binding be: WebGPU would drop the
 * dispatch and leave zeros (T5-XXL's 168 MB float32 feed-forward weights, against a browser's default
 * 128 MiB). The device's own limit, not setBufferLimit's: that one steers our splits, this is what fails.
 */
export function checkBinding<T extends tf.Tensor>(w: T, what: string): T {
  const limit = deviceLimits().maxStorageBufferBindingSize;
  const bytes = w.size * 4;
  if (limit && bytes > limit) {
    throw new Error(`${what} of shape [${w.shape}] needs ${(bytes / 2 ** 20).toFixed(1)} MiB in one binding, over this WebGPU device's ` +
      `${(limit / 2 ** 20).toFixed(1)} MiB maxStorageBufferBindingSize; load the model with weightDtype 'float16' (--weight-dtype float16) to halve it`);
  }
  return w;
}

/** What {@link trackWebgpuBindings} has seen since it was turned on. */
export interface BindingStats {
  /** Bind groups created (one per dispatch). */
  bindGroups: number;
  /** Largest buffer range bound, in bytes, and the program that bound it (tfjs-webgpu's shader key). */
  largest: number;
  largestProgram: string;
  /** Bindings over `limit` bytes, with their program. */
  over: { bytes: number; program: string }[];
  /** The size a binding is counted against (default 128 MiB, browsers' default maxStorageBufferBindingSize). */
  limit: number;
}

interface Device { createBindGroup(d: { entries: Iterable<{ resource: unknown }> }): unknown }
interface Tracked { device: Device; runWebGPUProgram(p: { shaderKey: string }, ...rest: unknown[]): unknown }

let stats: BindingStats | null = null;
let program = '';
const wrapped = new WeakSet<object>();

/**
 * Counts every buffer binding the WebGPU backend makes from now on (on: true; false stops and returns the
 * last figures): the ground truth that no dispatch binds more than `limit` bytes. For tests and benchmarks.
 */
export function trackWebgpuBindings(on: boolean, limit = 128 * 2 ** 20): BindingStats | null {
  if (on && tf.getBackend() !== 'webgpu') throw new Error(`trackWebgpuBindings needs the webgpu backend, not ${tf.getBackend()}`);
  const done = stats;
  stats = on ? { bindGroups: 0, largest: 0, largestProgram: '', over: [], limit } : null;
  const backend = tf.backend() as unknown as Tracked;
  if (on && !wrapped.has(backend)) {
    wrapped.add(backend);
    const run = backend.runWebGPUProgram.bind(backend);
    backend.runWebGPUProgram = (p, ...rest) => {
      program = p.shaderKey;
      return run(p, ...rest);
    };
    const create = backend.device.createBindGroup.bind(backend.device);
    backend.device.createBindGroup = (d) => {
      if (stats) {
        stats.bindGroups++;
        for (const e of d.entries) {
          const r = e.resource as { buffer?: { size: number }; offset?: number; size?: number };
          if (!r?.buffer) continue;
          const bytes = r.size ?? r.buffer.size - (r.offset ?? 0);
          if (bytes > stats.largest) { stats.largest = bytes; stats.largestProgram = program; }
          if (bytes > stats.limit && stats.over.length < 20) stats.over.push({ bytes, program });
        }
      }
      return create(d);
    };
  }
  return on ? stats : done;
}
