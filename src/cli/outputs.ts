/**
 * Where `tgate generate` writes its images. One image: the `--output` name itself. Several: the name with the
 * image's index before the extension (`out.png` → `out-0.png`, `out-1.png`, …), in the batch's order
 * [prompt 0's images…, prompt 1's images…]. `--grid`: one contact sheet at the `--output` name, a row per prompt
 * and a column per image.
 */
import path from 'node:path';
import type { RGBImage } from '../io/png.js';

/** The files `count` images go to. */
export function outputFiles(output: string, count: number, grid: boolean): string[] {
  if (count === 1 || grid) return [output];
  const ext = path.extname(output);
  const stem = output.slice(0, output.length - ext.length);
  return Array.from({ length: count }, (_, i) => `${stem}-${i}${ext}`);
}

/** Pixels of white between the cells of a contact sheet. */
const GAP = 2;

/** The images (all the same size) in `rows` rows of `cols`, separated by white lines. */
export function contactSheet(images: RGBImage[], rows: number, cols: number): RGBImage {
  const { width: w, height: h } = images[0];
  const width = cols * w + (cols - 1) * GAP;
  const height = rows * h + (rows - 1) * GAP;
  const data = new Uint8Array(width * height * 3).fill(255);
  images.forEach((img, i) => {
    const x0 = (i % cols) * (w + GAP);
    const y0 = Math.floor(i / cols) * (h + GAP);
    for (let y = 0; y < h; y++) data.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * width + x0) * 3);
  });
  return { width, height, data };
}
