/**
 * The layers of lib/, lowest first: a folder imports only from folders below it (or itself),
 * and no import runs in a circle. `npm run lint:layers` (part of `npm run check`, which CI runs) fails otherwise.
 * Folders on one line are side by side: neither imports the other.
 */
const LAYERS = [
  ['core'],
  ['sql', 'resilience', 'telemetry'],
  ['drivers'],
  ['pool'],
  ['config'],
  ['transactions', 'notify'],
  ['database'],
  ['migrations', 'health'],
  ['nest'],
  ['cli'],
];

const rank = new Map(LAYERS.flatMap((folders, i) => folders.map((f) => [f, i])));
const all = [...rank.keys()];

/** For each folder: the folders it must not import (higher ones, and its neighbours on the same line). */
const layerRules = all.map((folder) => {
  const forbidden = all.filter((other) => other !== folder && rank.get(other) >= rank.get(folder));
  return {
    name: `layer-${folder}`,
    comment: `lib/${folder} imports only from the layers below it: ${all.filter((o) => rank.get(o) < rank.get(folder)).join(', ') || 'none'}`,
    severity: 'error',
    from: { path: `^lib/${folder}/` },
    to: { path: `^lib/(${forbidden.join('|')})/` },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'no-circular',
      comment: 'No import cycle, inside a folder or across folders',
      severity: 'error',
      from: { path: '^lib/' },
      to: { circular: true },
    },
    {
      name: 'only-entry-imports-everything',
      comment: 'The package entry files (lib/index.ts, lib/health/index.ts) are imported by nothing inside lib/',
      severity: 'error',
      from: { path: '^lib/' },
      to: { path: '^lib/index\\.ts$' },
    },
    {
      name: 'lib-stands-alone',
      comment: 'lib/ never imports the sample, the tests or the benchmark',
      severity: 'error',
      from: { path: '^lib/' },
      to: { path: '^(sample|test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.cjs', '.mjs'] },
  },
};
