/**
 * The page of test/browser-lora-controlnet.test.ts (bundled by it): `window.tgateLoraControlnet.run` sets up
 * the wasm backend and runs test/support/lora-controlnet-run.ts on the pipeline, ControlNet and LoRA URLs.
 */
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { activeBackend, initBackend } from '../src/backends/index.js';
import { loraControlnetRun, type LoraControlnetSettings, type LoraControlnetSources } from './support/lora-controlnet-run.js';

// The .wasm files are copied next to the bundle (bundlePage).
setWasmPaths(new URL('./', import.meta.url).href);

const page = {
  run: async (src: LoraControlnetSources, s: LoraControlnetSettings) => {
    await initBackend('wasm', { quiet: true });
    const t0 = performance.now();
    const r = await loraControlnetRun(src, s);
    return { ...r, backend: activeBackend(), ms: performance.now() - t0 };
  },
};

export type LoraControlnetPage = typeof page;
(window as unknown as { tgateLoraControlnet: LoraControlnetPage }).tgateLoraControlnet = page;
