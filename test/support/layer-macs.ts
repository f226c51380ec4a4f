/**
 * thop's count of what really runs: output elements × (input features, or input channels × kernel area) over
 * every Linear and Conv2d call of the given models while `run` runs, split into self-attention, cross-attention
 * and the rest by module path (attn1 / attn2). The layers are only observed: each call goes through unchanged.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../../src/nn/module.js';
import { Linear } from '../../src/layers/linear.js';
import { Conv2d } from '../../src/layers/conv.js';

export interface LayerMacs { rest: number; selfLinear: number; crossLinear: number }

export async function countLayerMacs<T>(models: Module[], run: () => T | Promise<T>): Promise<{ macs: LayerMacs; result: T }> {
  const macs: LayerMacs = { rest: 0, selfLinear: 0, crossLinear: 0 };
  const layers = models.flatMap((m) => [...m.namedModules()].filter(([, l]) => l instanceof Linear || l instanceof Conv2d) as [string, Linear | Conv2d][]);
  let depth = 0;
  for (const [p, l] of layers) {
    const bucket = /\.attn1\./.test(p) ? 'selfLinear' : /\.attn2\./.test(p) ? 'crossLinear' : 'rest';
    const perOut = l instanceof Linear ? l.inFeatures : l.inChannels * l.kernelSize ** 2;
    // forwardTransposed may call forward: count the outermost call only.
    const observe = (name: 'forward' | 'forwardTransposed') => {
      const inner = (l as unknown as Record<string, (x: tf.Tensor) => tf.Tensor>)[name]?.bind(l);
      if (!inner) return;
      (l as unknown as Record<string, unknown>)[name] = (x: tf.Tensor) => {
        depth++;
        try {
          const y = inner(x);
          if (depth === 1) macs[bucket] += y.size * perOut;
          return y;
        } finally {
          depth--;
        }
      };
    };
    observe('forward');
    observe('forwardTransposed');
  }
  try {
    return { macs, result: await run() };
  } finally {
    for (const [, l] of layers) {
      delete (l as unknown as { forward?: unknown }).forward;
      delete (l as unknown as { forwardTransposed?: unknown }).forwardTransposed;
    }
  }
}
