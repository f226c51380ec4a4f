/** Node file access for safetensors: reads only the byte range of the tensor asked for. */
import { open, type FileHandle } from 'node:fs/promises';
import { SafetensorsError, SafetensorsFile, type ByteSource } from './safetensors.js';

export class FileSource implements ByteSource {
  private handle?: Promise<FileHandle>;
  constructor(readonly name: string) {}
  private fh(): Promise<FileHandle> {
    this.handle ??= open(this.name, 'r');
    return this.handle;
  }
  async size(): Promise<number> { return (await (await this.fh()).stat()).size; }
  async read(begin: number, end: number): Promise<Uint8Array> {
    const buf = new Uint8Array(end - begin);
    const fh = await this.fh();
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, begin + got);
      if (bytesRead === 0) throw new SafetensorsError(this.name, `truncated: unexpected end of file at byte ${begin + got} (the file shrank after its header was read?)`);
      got += bytesRead;
    }
    return buf;
  }
  async close(): Promise<void> {
    if (this.handle) await (await this.handle).close();
    this.handle = undefined;
  }
}

/** Opens a local safetensors file (header parsed and validated; tensor data read lazily). */
export function openSafetensors(path: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(new FileSource(path));
}
