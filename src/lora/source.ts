/** Where a LoRA file comes from: a local path (Node), a URL (read by HTTP ranges; anything in a browser), bytes, or an open file. */
import { BufferSource, HttpRangeSource, SafetensorsFile, type HttpRangeOptions } from '../io/safetensors.js';
import { isRemote } from '../io/location.js';

/** A LoRA safetensors file: path or URL, its bytes, or a {@link SafetensorsFile} already open. */
export type LoraSource = string | URL | Uint8Array | ArrayBuffer | SafetensorsFile;

/** Opens `src` (a URL with `fetch` and the range options); `owned` says whether the caller must close it. */
export async function openLoraSource(
  src: LoraSource, o: { fetch?: typeof fetch } & Pick<HttpRangeOptions, 'readAheadBytes' | 'signal' | 'timeoutMs'> = {},
): Promise<{ file: SafetensorsFile; owned: boolean }> {
  if (src instanceof SafetensorsFile) return { file: src, owned: false };
  if (src instanceof Uint8Array || src instanceof ArrayBuffer) {
    const bytes = src instanceof Uint8Array ? src : new Uint8Array(src);
    return { file: await SafetensorsFile.open(new BufferSource(bytes, '<LoRA bytes>')), owned: true };
  }
  const loc = String(src);
  if (isRemote(loc, o.fetch)) return { file: await SafetensorsFile.open(new HttpRangeSource(loc, o.fetch ?? fetch, { readAheadBytes: o.readAheadBytes, signal: o.signal, timeoutMs: o.timeoutMs })), owned: true };
  // Imported on demand: the browser bundle must not load Node's file reader.
  const { openSafetensors } = await import('../io/node-source.js');
  return { file: await openSafetensors(loc), owned: true };
}
