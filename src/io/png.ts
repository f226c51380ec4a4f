/**
 * RGB images (what the pipelines return) and their PNG encoding. The codec is pngjs, a Node package: it is
 * imported by a specifier bundlers do not follow, and the file writer of {@link savePNG} lives in a module
 * imported on demand, so a browser bundle of the package builds and never loads either.
 */

/** An RGB image, row-major, 3 bytes per pixel. */
export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** The most pixels {@link decodePNG} accepts (64 Mpx, e.g. 8192×8192): checked from the header before decoding. */
export const MAX_PNG_PIXELS = 2 ** 26;

type PngJs = typeof import('pngjs');
const PNGJS = 'pngjs';
let pngjs: Promise<PngJs> | undefined;

function loadPngjs(): Promise<PngJs> {
  pngjs ??= (import(/* webpackIgnore: true */ /* @vite-ignore */ PNGJS) as Promise<PngJs>).catch((e: Error) => {
    pngjs = undefined;
    throw new Error(`PNG encoding and decoding need Node and the pngjs package (${e.message.split('\n')[0]}); in a browser, draw the RGB bytes to a canvas instead`);
  });
  return pngjs;
}

function checkImage(img: RGBImage): void {
  const ok = img && Number.isInteger(img.width) && Number.isInteger(img.height) && img.width > 0 && img.height > 0
    && img.data instanceof Uint8Array && img.data.length === img.width * img.height * 3;
  if (!ok) throw new Error(`not an RGB image: expected { width, height, data: Uint8Array of width × height × 3 bytes }`);
}

/** Encodes an RGB image as an 8-bit RGBA PNG (opaque). Node only. */
export async function encodePNG(img: RGBImage): Promise<Uint8Array> {
  checkImage(img);
  const { PNG } = await loadPngjs();
  const png = new PNG({ width: img.width, height: img.height });
  for (let i = 0, j = 0; i < img.width * img.height; i++) {
    png.data[j++] = img.data[i * 3];
    png.data[j++] = img.data[i * 3 + 1];
    png.data[j++] = img.data[i * 3 + 2];
    png.data[j++] = 255;
  }
  return PNG.sync.write(png);
}

/** Width and height from a PNG's header (signature, then IHDR first), without decoding anything. */
function pngSize(bytes: Uint8Array, name: string): { width: number; height: number } {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 24 || sig.some((b, i) => bytes[i] !== b)) throw new Error(`${name} is not a PNG file (no PNG signature)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') throw new Error(`${name}: the PNG's first chunk is not IHDR`);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/**
 * Decodes a PNG (any colour type and bit depth pngjs reads) to RGB bytes; alpha is dropped, as PIL's
 * `convert("RGB")` does. The size is checked from the header first (at most {@link MAX_PNG_PIXELS}), so a
 * small file cannot make it allocate gigabytes. `name` (a file name) is used in errors. Node only.
 */
export async function decodePNG(bytes: Uint8Array, name = 'PNG image'): Promise<RGBImage> {
  const { width, height } = pngSize(bytes, name);
  if (width < 1 || height < 1 || width * height > MAX_PNG_PIXELS) {
    throw new Error(`${name} is ${width}×${height}: a PNG must have 1 to ${MAX_PNG_PIXELS} pixels`);
  }
  const { PNG } = await loadPngjs();
  let png: { width: number; height: number; data: Uint8Array };
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new Error(`${name} is not a readable PNG: ${(e as Error).message}`);
  }
  const data = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    data[i * 3] = png.data[i * 4];
    data[i * 3 + 1] = png.data[i * 4 + 1];
    data[i * 3 + 2] = png.data[i * 4 + 2];
  }
  return { width: png.width, height: png.height, data };
}

/**
 * Writes an RGB image as a PNG file (Node). The file is written through a temporary sibling and renamed, so
 * a failure never leaves half a file.
 */
export async function savePNG(img: RGBImage, file: string): Promise<void> {
  const bytes = await encodePNG(img);
  const { writeFileAtomic } = await import('./node-write.js');
  await writeFileAtomic(file, bytes);
}
