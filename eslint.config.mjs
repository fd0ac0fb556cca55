// ESLint (flat config): typescript-eslint's recommended rules, and the layering of docs/architecture.md
// as import boundaries. `npm run lint` runs it; `npm test` (and so CI) runs it before any test.
import tseslint from 'typescript-eslint';
import pluginVue from 'eslint-plugin-vue';
import vueParser from 'vue-eslint-parser';
import globals from 'globals';

/** One boundary: imports whose specifier matches `regex` are refused with `message`. */
const refuse = (regex, message) => ({ regex, message });
const boundaries = (...patterns) => ({ 'no-restricted-imports': ['error', { patterns }] });

const NODE_OR_ELECTRON = [
  refuse('^node:', 'runs in the browser or the sandboxed renderer: no Node modules'),
  refuse('^electron$', 'Electron belongs to src-main/electron and the preload only'),
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'native/**', 'build/**', 'release/**', 'out/**', 'test-results/**'] },
  ...tseslint.configs.recommended,
  ...pluginVue.configs['flat/essential'],
  {
    files: ['**/*.vue'],
    languageOptions: { parser: vueParser, parserOptions: { parser: tseslint.parser, sourceType: 'module' }, globals: globals.browser },
  },
  {
    files: ['**/*.mjs', 'bin/**/*.js', 'scripts/**', 'bench/**'],
    languageOptions: { globals: globals.node },
  },
  {
    // The launcher is CommonJS so that it runs on any Node without a loader.
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    rules: {
      // tsc's noUnusedLocals/noUnusedParameters already report these, with the compiler's own exceptions.
      '@typescript-eslint/no-unused-vars': 'off',
      // A few deliberate `any`s sit at untyped edges (JSON from qemu-img in tests); the compiler is strict elsewhere.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },

  // ---- the layering: data flows down, never up ----
  {
    files: ['src-renderer/**'],
    rules: boundaries(
      refuse('^(\\.\\./)+(src-main|test|scripts|bench|bin)(/|$)', 'the renderer knows only the contract: import from src-shared, never src-main'),
      ...NODE_OR_ELECTRON,
    ),
  },
  {
    files: ['src-shared/**'],
    rules: boundaries(refuse('^\\.\\./', 'src-shared is the contract: it imports nothing of ours'), ...NODE_OR_ELECTRON, refuse('^(vue|pinia|ws|zod)$', 'src-shared imports no library')),
  },
  {
    files: ['src-main/services/**'],
    rules: boundaries(
      refuse('^\\.\\./(electron|host|cli|api)(/|$)', 'services know nothing of the faces (electron, host, cli) or the api over them'),
      refuse('^electron$', 'services know nothing of Electron'),
    ),
  },
  {
    files: ['src-main/api/**', 'src-main/cli/**'],
    rules: boundaries(refuse('^\\.\\./(electron|host)(/|$)', 'the api and the CLI do not import a face'), refuse('^electron$', 'only src-main/electron and the preload use Electron')),
  },
  {
    files: ['src-main/formats/*/**'],
    rules: boundaries(
      refuse('^\\.\\./\\.\\./(services|cli|api|host|electron|registry)(/|$|\\.)', 'formats never import services, the registry, the api or a face: they are given what they need (OpenOptions.openBacking)'),
      refuse('^\\.\\./(?!\\.\\.)', 'formats never import each other: what two formats share goes to src-main/block'),
      refuse('^electron$', 'formats know nothing of Electron'),
    ),
  },
  {
    files: ['src-main/crypto/**'],
    rules: boundaries(
      refuse('^(?!\\./|\\.\\./block(/|$)|node:crypto$)', 'crypto/ imports only block/ and node:crypto: it knows no format, service or face, and is given its I/O'),
    ),
  },
  {
    // inside/ reads what is inside a disk through a read-only byte view: below the services, beside the formats.
    files: ['src-main/inside/**'],
    rules: boundaries(
      refuse('^(\\.\\./)+(formats|services|cli|api|host|electron|registry|crypto)(/|$|\\.)', 'inside/ imports only block/: it reads a BlockDevice and knows no format, service or face'),
      refuse('^(\\.\\./)+(src-shared|src-renderer)(/|$)', 'inside/ imports only block/: its result types live in inside/types.ts'),
      refuse('^(?!node:crypto$)node:', 'inside/ does no I/O of its own: it reads through a BlockDevice'),
      refuse('^electron$', 'inside/ knows nothing of Electron'),
      ),
    },
    {
    // A format's own sub-folders (qcow2/check/, qcow2/snapshot/): one level deeper, the same rules.
    files: ['src-main/formats/*/*/**'],
    rules: boundaries(
      refuse('^\\.\\./\\.\\./\\.\\./(services|cli|api|host|electron|registry)(/|$|\\.)', 'formats never import services, the registry, the api or a face: they are given what they need (OpenOptions.openBacking)'),
      refuse('^\\.\\./\\.\\./(?!\\.\\.)', 'formats never import each other: what two formats share goes to src-main/block'),
      refuse('^electron$', 'formats know nothing of Electron'),
    ),
  },
  {
    files: ['src-main/block/**'],
    rules: boundaries(
      refuse('^\\.\\./(formats|crypto|services|cli|api|host|electron|registry)(/|$|\\.)', 'block/ is below the formats, crypto and services: it imports none of them'),
      refuse('^electron$', 'block/ knows nothing of Electron'),
    ),
  },
);
