import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES } from './support/helpers.js';
import { openSafetensors } from '../src/io/node-source.js';

const DT: Record<string, string> = { float32: 'F32', int64: 'I64', float16: 'F16', int32: 'I32', bool: 'BOOL' };

function manifestTensors(): [string, Record<string, { shape: number[]; dtype: string }>][] {
  const out: [string, Record<string, { shape: number[]; dtype: string }>][] = [];
  for (const [root, mf] of [['', 'MANIFEST.json'], ['ext', 'ext/MANIFEST.json']]) {
    const m = JSON.parse(fs.readFileSync(path.join(FIXTURES, mf), 'utf8'));
    for (const [rel, v] of Object.entries<{ tensors?: Record<string, { shape: number[]; dtype: string }> }>(m.files)) {
      if (rel.endsWith('.safetensors') && v.tensors) out.push([path.join(root, rel), v.tensors]);
    }
  }
  return out;
}

describe('fixture safetensors load with the MANIFEST shapes and dtypes', () => {
  const cases = manifestTensors();
  test('there are fixture files with tensor listings', () => expect(cases.length).toBeGreaterThan(20));
  test.each(cases)('%s', async (rel, tensors) => {
    const f = await openSafetensors(path.join(FIXTURES, rel));
    try {
      expect(new Set(f.keys())).toEqual(new Set(Object.keys(tensors)));
      for (const [k, want] of Object.entries(tensors)) {
        const info = f.info(k);
        expect(info.shape).toEqual(want.shape);
        expect(info.dtype).toBe(DT[want.dtype] ?? want.dtype);
        const t = await f.tensor(k);
        expect(t.shape).toEqual(want.shape);
        t.dispose();
      }
    } finally {
      await f.close();
    }
  });
});
