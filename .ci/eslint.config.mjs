// ESLint for lib/, with typescript-eslint's recommended type-checked rules
// (`npm run lint`, part of `npm test` and .ci/run). Rules turned off below say why.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/**', 'bench/**', 'sample/**', '.ci/**', 'lib/**/*.cjs'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['lib/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: process.cwd() },
    },
    rules: {
      // Unused parameters named with a leading underscore are kept on purpose (interface shapes).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Errors caught from drivers and user code (and AbortSignal reasons) are unknown or any; they are passed on unchanged.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true, allowThrowingAny: true }],
      // An async function without await is kept where a caller expects a promise: a throw becomes a rejection.
      '@typescript-eslint/require-await': 'off',
      // import.meta is refused by the CommonJS build (TS1343) and allowed by the ES module check, so
      // @ts-expect-error would fail one of the two: @ts-ignore with the reason written beside it.
      '@typescript-eslint/ban-ts-comment': ['error', { 'ts-ignore': 'allow-with-description' }],
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingUnknown: true, allowThrowingAny: true }],
    },
  },
);
