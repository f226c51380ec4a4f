#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm run build` (run automatically by `npm install` through `prepare`).
import('../dist/src/cli/main.js').catch((e) => {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/src/cli')) {
    console.error('tgate: the package is not built yet; run `npm run build` first.');
    process.exit(1);
  }
  throw e;
});
