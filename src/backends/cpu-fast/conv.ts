/** Float32 NHWC Conv2D, bit-identical to the stock kernel. */
import * as tf from '@tensorflow/tfjs-core';
import { f32, type FastFunc } from './kernel-base.js';

// Local bindings for the hot loops (see common.ts for why).
const F32 = Float32Array;

/**
 * NHWC float32 Conv2D in the stock kernel's loop order and float32 accumulation (so results are
 * bit-identical), with the loop bounds and strides in locals and the unit channel stride specialised.
 */
export const conv2D: FastFunc = ({ inputs, backend, attrs }) => {
  const { x, filter } = inputs;
  const xv = f32(x, backend), wv = f32(filter, backend);
  if (!xv || !wv || x.shape.length !== 4 || filter.shape.length !== 4) return null;
  if (attrs?.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') return null;
  const ci = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
    attrs?.strides as [number, number], (attrs?.dilations ?? 1) as [number, number], attrs?.pad as 'same',
    attrs?.dimRoundingMode as 'floor' | undefined, false, 'channelsLast');
  const [B, OH, OW, CO] = ci.outShape;
  const FH = ci.filterHeight, FW = ci.filterWidth, DH = ci.dilationHeight, DW = ci.dilationWidth;
  const SH = ci.strideHeight, SW = ci.strideWidth, PT = ci.padInfo.top, PL = ci.padInfo.left;
  const IH = ci.inHeight, IW = ci.inWidth, CI = ci.inChannels;
  const y = new F32(B * OH * OW * CO);
  const xRow = IW * CI, xBatch = IH * xRow, yRow = OW * CO, yBatch = OH * yRow, wRow = FW * CI * CO;
  for (let b = 0; b < B; b++) {
    for (let yR = 0; yR < OH; yR++) {
      const yo2 = b * yBatch + yR * yRow, xRC = yR * SH - PT;
      for (let wR = 0; wR < FH; wR++) {
        const xR = xRC + wR * DH;
        if (xR < 0 || xR >= IH) continue;
        const wo1 = wR * wRow, xo2 = b * xBatch + xR * xRow;
        for (let yC = 0; yC < OW; yC++) {
          const yo3 = yo2 + yC * CO, xCC = yC * SW - PL;
          for (let wC = 0; wC < FW; wC++) {
            const xC = xCC + wC * DW;
            if (xC < 0 || xC >= IW) continue;
            const xo3 = xo2 + xC * CI;
            let wo3 = wo1 + wC * CI * CO;
            for (let d1 = 0; d1 < CI; d1++) {
              const xVal = xv[xo3 + d1];
              for (let d2 = 0; d2 < CO; d2++) y[yo3 + d2] += xVal * wv[wo3 + d2];
              wo3 += CO;
            }
          }
        }
      }
    }
  }
  return backend.makeTensorInfo([B, OH, OW, CO], 'float32', y);
};
