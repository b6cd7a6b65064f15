// Finishes the published build, after `tsc -p tsconfig.build.json` (dist/cjs, the one
// implementation, CommonJS) and its declarations as ES modules in dist/esm (see package.json):
//
// 1. marks dist/cjs as CommonJS and dist/esm as ESM, whatever the root package.json says;
// 2. rewrites `import.meta.url` in dist/cjs to this file's URL, as Rollup and tsup do for
//    CommonJS output (tsc leaves it as is, behind a `@ts-ignore`, and it would not parse);
// 3. writes the ES module entry points: dist/esm/<entry>.js re-exports, by name, everything
//    dist/cjs/<entry>.js exports. An app that both imports and requires nestjs-dbpool thus
//    still has one copy of its state (the transactions' AsyncLocalStorage and
//    the error classes).
//
// Run by `npm run build:package` (so by `npm run build`, and by `npm pack` / `npm publish` through prepack).
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ENTRIES = ['index', 'health/index'];
const IMPORT_META_URL = /\bimport\.meta\.url\b/g;
const CJS_URL = 'require("node:url").pathToFileURL(__filename).href';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cjsDir = join(root, 'dist/cjs');
const esmDir = join(root, 'dist/esm');

writeFileSync(join(cjsDir, 'package.json'), '{ "type": "commonjs" }\n');
mkdirSync(esmDir, { recursive: true });
writeFileSync(join(esmDir, 'package.json'), '{ "type": "module" }\n');

for (const file of readdirSync(cjsDir, { recursive: true, encoding: 'utf8' })) {
  if (!/\.c?js$/.test(file)) continue;
  const path = join(cjsDir, file);
  const code = readFileSync(path, 'utf8');
  const shimmed = code.replace(IMPORT_META_URL, CJS_URL);
  if (/\bimport\.meta\b/.test(shimmed)) throw new Error(`${path}: import.meta other than import.meta.url cannot run as CommonJS`);
  if (shimmed !== code) writeFileSync(path, shimmed);
}

const require = createRequire(import.meta.url);
for (const entry of ENTRIES) {
  const cjs = join(cjsDir, `${entry}.js`);
  const esm = join(esmDir, `${entry}.js`);
  const names = Object.keys(require(cjs))
    .filter((name) => name !== '__esModule' && name !== 'default')
    .sort();
  if (names.length === 0) throw new Error(`${cjs} exports nothing`);
  let from = relative(dirname(esm), cjs).split(sep).join('/');
  if (!from.startsWith('.')) from = `./${from}`;
  mkdirSync(dirname(esm), { recursive: true });
  writeFileSync(esm, `export {\n  ${names.join(',\n  ')},\n} from '${from}';\n`);
}
