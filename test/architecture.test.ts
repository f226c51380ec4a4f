/**
 * Rules of the source tree that a change must keep (docs/ARCHITECTURE.md), read from the sources with the
 * TypeScript parser: imports (static, type-only, re-exports, dynamic) and calls.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every .ts file under `dir` (relative to the repository root), as root-relative paths with '/'. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) { if (e.name !== 'node_modules' && e.name !== 'dist') out.push(...sources(rel)); }
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** The relative module specifiers of `text` resolved to root-relative .ts paths, and the names it calls. */
function scan(file: string, text: string): { imports: string[]; calls: string[] } {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const imports: string[] = [];
  const calls: string[] = [];
  const addImport = (spec: ts.Node | undefined) => {
    if (!spec || !ts.isStringLiteralLike(spec) || !spec.text.startsWith('.')) return;
    imports.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), spec.text)).replace(/\.js$/, '.ts'));
  };
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) addImport(n.moduleSpecifier);
    if (ts.isCallExpression(n)) {
      if (n.expression.kind === ts.SyntaxKind.ImportKeyword) addImport(n.arguments[0]);
      const callee = n.expression;
      if (ts.isIdentifier(callee)) calls.push(callee.text);
      else if (ts.isPropertyAccessExpression(callee)) calls.push(callee.name.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return { imports, calls };
}

describe('backends stay behind their entry points', () => {
  const BACKENDS = 'src/backends/';
  /**
   * The only files of src/backends that code outside it may import: the kernel interface layers call, and the
   * public face (selection, device limits, knobs, errors). src/index.ts re-exports from the latter.
   */
  const ENTRY_POINTS = ['src/backends/kernels.ts', 'src/backends/index.ts'];
  /** Code held to the rule. test/ is not: backend tests exercise the internals they test. */
  const CHECKED_DIRS = ['src', 'bench', 'examples'];

  /** The rule broken by `file` (root-relative) with contents `text`, one line each. */
  function violations(file: string, text: string): string[] {
    if (file.startsWith(BACKENDS)) return [];
    const { imports, calls } = scan(file, text);
    const out: string[] = [];
    for (const target of imports) {
      if (!target.startsWith(BACKENDS)) continue;
      if (file.startsWith('src/nn/')) out.push(`${file}: nn/ imports ${target} (nn/ knows no backend: register a hook instead)`);
      else if (!ENTRY_POINTS.includes(target)) out.push(`${file}: imports ${target} (use ${ENTRY_POINTS.join(' or ')})`);
    }
    if (calls.includes('getBackend')) out.push(`${file}: calls tf.getBackend() (ask backends/kernels.ts, or activeBackend() from backends/index.ts)`);
    return out;
  }

  test('the check catches each kind of breach', () => {
    const layer = 'src/layers/x.ts';
    expect(violations(layer, "import { guardWasmHeap } from '../backends/wasm/heap.js';")).toHaveLength(1);
    expect(violations(layer, "import type { DawnModule } from '../backends/webgpu/dawn.js';")).toHaveLength(1);
    expect(violations(layer, "export { installWasm } from '../backends/wasm/index.js';")).toHaveLength(1);
    expect(violations(layer, "const m = await import('../backends/select.js');")).toHaveLength(1);
    expect(violations(layer, "if (tf.getBackend() === 'wasm') f();")).toHaveLength(1);
    expect(violations(layer, "import { getBackend } from '@tensorflow/tfjs-core'; getBackend();")).toHaveLength(1);
    expect(violations('src/nn/m.ts', "import { kernels } from '../backends/kernels.js';")).toHaveLength(1);
    expect(violations('bench/b.ts', "import { initBackend } from '../src/backends/index.js';")).toEqual([]);
    expect(violations(layer, "import { kernels } from '../backends/kernels.js'; kernels().silu?.(x);")).toEqual([]);
    expect(violations('src/backends/select.ts', "tf.getBackend(); import { x } from './wasm/heap.js';")).toEqual([]);
  });

  test('no file outside src/backends imports its internals or reads tf.getBackend()', () => {
    const files = CHECKED_DIRS.flatMap(sources);
    expect(files.length).toBeGreaterThan(50);
    expect(files).toEqual(expect.arrayContaining(ENTRY_POINTS));
    expect(files.flatMap((f) => violations(f, readFileSync(path.join(ROOT, f), 'utf8')))).toEqual([]);
  });
});

/**
 * The import graph between folders: no cycle between folders of src/ and bench/, type-only imports included;
 * src/ imports nothing outside src/, and neither src/ nor bench/ imports test/. Each src/<folder> is a node;
 * files directly in src/ (index.ts) form the node "src".
 */
const FOLDER_SCANNED = ['src', 'bench'];

/** The folder a file belongs to: src/<folder>, "src" for files directly in src/, else its top-level folder. */
function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'src') return parts.length > 2 ? `src/${parts[1]}` : 'src';
  return parts[0];
}

interface FileImport { from: string; to: string }

/** Relative imports of every scanned file (static, type-only, re-exports and dynamic `import('…')`). */
function fileImports(): FileImport[] {
  return FOLDER_SCANNED.flatMap(sources).flatMap((from) =>
    scan(from, readFileSync(path.join(ROOT, from), 'utf8')).imports.map((to) => ({ from, to })));
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

  test('no cycle between folders (type-only imports included)', () => {
    expect(cycles(graph).map((scc) => cycleText(scc, graph)).join('\n\n')).toBe('');
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
