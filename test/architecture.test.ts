/**
 * The import graph between folders (docs/ARCHITECTURE.md): no cycle between folders of src/ and bench/, type-only
 * imports included; src/ imports nothing outside src/, and neither src/ nor bench/ imports test/.
 * Each src/<folder> is a node; files directly in src/ (index.ts and, for now, the backends) form the node "src".
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCANNED = ['src', 'bench'];

/**
 * Folder imports that still close a cycle and belong to other parts of issue 17: the attention part (Attention
 * moves into src/attention) and the backends part (backend modules move into src/backends, so the src root holds
 * only index.ts). The lead empties this list when merging them; an entry whose import no longer exists fails
 * the test, so none lingers.
 */
const PENDING_ISSUE_17_EDGES: { from: string; to: string; part: string }[] = [
  { from: 'src/layers', to: 'src/attention', part: 'attention: layers/attention.ts, layers/transformer.ts import attention/processor.ts, sdpa.ts' },
  { from: 'src/nn', to: 'src', part: 'backends: nn/module.ts imports the WebGPU buffer-pool release from backend.ts' },
  { from: 'src/layers', to: 'src', part: 'backends: layers/wasm-kernels.ts imports backend-wasm.ts' },
  { from: 'src/attention', to: 'src', part: 'backends: attention/sdpa.ts imports limits.ts' },
  { from: 'src/nn', to: 'src/layers', part: 'backends: nn/offload.ts imports layers/streamed-weights.ts (the streamed GEMM layout)' },
  { from: 'src/cli', to: 'src', part: 'backends: the CLI imports backend.ts, which sits at the src root beside index.ts' },
  { from: 'src/convert', to: 'src', part: 'backends: tgate convert --verify imports backend.ts at the src root' },
];

/** Every .ts file under `dir`, relative to the repository root. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(rel));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** The folder a file belongs to: src/<folder>, "src" for files directly in src/, else its top-level folder. */
function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'src') return parts.length > 2 ? `src/${parts[1]}` : 'src';
  return parts[0];
}

interface FileImport { from: string; to: string }

/** Relative imports of every scanned file (static, type-only, re-exports and dynamic `import('…')`). */
function fileImports(): FileImport[] {
  const out: FileImport[] = [];
  for (const file of SCANNED.flatMap(tsFiles)) {
    const info = ts.preProcessFile(fs.readFileSync(path.join(ROOT, file), 'utf8'), true, true);
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), fileName)).replace(/\.js$/, '.ts');
      out.push({ from: file, to });
    }
  }
  return out;
}

/** Folder → folder → the file imports behind that edge. */
function folderGraph(imports: FileImport[]): Map<string, Map<string, FileImport[]>> {
  const g = new Map<string, Map<string, FileImport[]>>();
  for (const imp of imports) {
    const a = folderOf(imp.from);
    const b = folderOf(imp.to);
    if (a === b) continue;
    if (!g.has(a)) g.set(a, new Map());
    const edges = g.get(a)!;
    if (!edges.has(b)) edges.set(b, []);
    edges.get(b)!.push(imp);
  }
  return g;
}

/** Strongly connected components with more than one folder (Tarjan): each is one or more cycles. */
function cycles(g: Map<string, Map<string, FileImport[]>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return out;
}

/** A cycle as text: every folder edge inside it, with the imports that make it. */
function cycleText(scc: string[], g: Map<string, Map<string, FileImport[]>>): string {
  const lines = [`cycle between ${scc.join(', ')}:`];
  for (const a of scc) {
    for (const [b, imps] of g.get(a) ?? []) {
      if (!scc.includes(b)) continue;
      const shown = imps.slice(0, 4).map((i) => `${i.from} → ${i.to}`).join('; ');
      lines.push(`  ${a} → ${b}: ${shown}${imps.length > 4 ? `; … ${imps.length - 4} more` : ''}`);
    }
  }
  return lines.join('\n');
}

describe('folder imports', () => {
  const imports = fileImports();
  const graph = folderGraph(imports);

  test('no cycle between folders (type-only imports included), apart from the pending issue-17 edges', () => {
    const pending = (a: string, b: string) => PENDING_ISSUE_17_EDGES.some((e) => e.from === a && e.to === b);
    const rest = new Map([...graph].map(([a, edges]) => [a, new Map([...edges].filter(([b]) => !pending(a, b)))]));
    const found = cycles(rest).map((scc) => cycleText(scc, rest));
    expect(found.join('\n\n')).toBe('');
  });

  test('every pending edge still exists (remove the ones a merge resolved)', () => {
    const gone = PENDING_ISSUE_17_EDGES.filter((e) => !graph.get(e.from)?.has(e.to)).map((e) => `${e.from} → ${e.to} (${e.part})`);
    expect(gone).toEqual([]);
  });

  test('src imports nothing outside src; src and bench never import test', () => {
    const bad = imports.filter((i) => (i.from.startsWith('src/') && !i.to.startsWith('src/')) || i.to.startsWith('test/'));
    expect(bad.map((i) => `${i.from} → ${i.to}`)).toEqual([]);
  });

  test('the cycle finder finds a cycle and names the files that form it', () => {
    const toy = folderGraph([
      { from: 'src/io/a.ts', to: 'src/models/b.ts' }, { from: 'src/models/b.ts', to: 'src/io/c.ts' }, { from: 'src/nn/d.ts', to: 'src/io/a.ts' },
    ]);
    const found = cycles(toy);
    expect(found).toEqual([['src/io', 'src/models']]);
    expect(cycleText(found[0], toy)).toBe('cycle between src/io, src/models:\n  src/io → src/models: src/io/a.ts → src/models/b.ts\n  src/models → src/io: src/models/b.ts → src/io/c.ts');
  });
});
