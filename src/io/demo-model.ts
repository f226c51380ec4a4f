/**
 * Where the bundled demo model (assets/tiny-shapes) is: found from this module's own location, so it is the
 * installed package's copy whatever the working directory. Uses no Node module (it is exported from the
 * package entry, which browser bundles load).
 */

/**
 * The folder of the bundled tiny-shapes demo pipeline (64×64, coloured shapes), as a local path for
 * `loadPipeline(demoModelDir())`. Node only: in a browser, serve `assets/tiny-shapes-tfjs` and pass its URL.
 */
export function demoModelDir(): string {
  const here = new URL(import.meta.url);
  if (here.protocol !== 'file:') {
    throw new Error(`demoModelDir() needs the package on a local disk (Node); this module was loaded from ${here.protocol}// — serve assets/tiny-shapes-tfjs and pass its URL to loadPipeline`);
  }
  // dist/src/io/demo-model.js (the built package) or src/io/demo-model.ts (tsx, jest): two or three levels down.
  const up = here.pathname.includes('/dist/src/io/') ? '../../../' : '../../';
  return fileUrlPath(new URL(`${up}assets/tiny-shapes`, here));
}

/** A file: URL as a local path (node:url's fileURLToPath, for the cases a package location can take). */
function fileUrlPath(u: URL): string {
  const p = decodeURIComponent(u.pathname);
  // Windows: file:///C:/x → C:/x (Node's fs takes forward slashes); a UNC share keeps its host.
  if (/^\/[A-Za-z]:\//.test(p)) return p.slice(1);
  return u.host ? `//${u.host}${p}` : p;
}
