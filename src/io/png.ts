/** RGB images (what the pipelines return) and their PNG encoding (Node: pngjs). */

/** An RGB image, row-major, 3 bytes per pixel. */
export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export async function encodePNG(img: RGBImage): Promise<Uint8Array> {
  const { PNG } = await import('pngjs');
  const png = new PNG({ width: img.width, height: img.height });
  for (let i = 0, j = 0; i < img.width * img.height; i++) {
    png.data[j++] = img.data[i * 3];
    png.data[j++] = img.data[i * 3 + 1];
    png.data[j++] = img.data[i * 3 + 2];
    png.data[j++] = 255;
  }
  return PNG.sync.write(png);
}

export async function decodePNG(bytes: Uint8Array): Promise<RGBImage> {
  const { PNG } = await import('pngjs');
  const png = PNG.sync.read(Buffer.from(bytes));
  const data = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    data[i * 3] = png.data[i * 4];
    data[i * 3 + 1] = png.data[i * 4 + 1];
    data[i * 3 + 2] = png.data[i * 4 + 2];
  }
  return { width: png.width, height: png.height, data };
}
