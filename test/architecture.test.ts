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
  const CHECKED_DIRS = ['src', 'bench', 'convert', 'examples'];

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
