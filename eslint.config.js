import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Modules that do I/O, read clocks, or otherwise reach outside the process. */
const impureModules = [
  'fs', 'fs/promises', 'node:fs', 'node:fs/promises', 'net', 'node:net', 'http', 'node:http', 'http2', 'node:http2',
  'child_process', 'node:child_process', 'dgram', 'node:dgram', 'os', 'node:os', 'timers', 'node:timers',
  'timers/promises', 'node:timers/promises', 'crypto', 'node:crypto', 'worker_threads', 'node:worker_threads',
  'perf_hooks', 'node:perf_hooks', 'process', 'node:process',
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'test/k8s/tools/**', 'coverage/**', 'bench/results/**', 'charts/**', 'deploy/**', '.tools/**', '.local-cluster/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Plain Node scripts (scripts/, bin/, fixtures) run in Node: its globals are defined there.
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    languageOptions: {
      globals: {
        process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly',
        setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly',
      },
    },
    // Some scripts also declare them in a `/* global */` comment; that is not an error.
    rules: { 'no-redeclare': ['error', { builtinGlobals: false }] },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The pure parts: the Paxos core and the planner. They take storage, transport, clock and
    // randomness as injected values so that the simulator can drive them deterministically.
    files: ['node/src/core/**/*.ts', 'operator/src/plan/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: impureModules.map((name) => ({ name, message: 'The pure core must not do I/O; inject it.' })),
        patterns: [
          { group: ['**/io/**', '**/k8s/**', '**/controller/**', '@grpc/*', '@kubernetes/*', 'pino', 'prom-client'], message: 'The pure core must not import I/O layers.' },
        ],
      }],
      'no-restricted-globals': ['error',
        { name: 'Date', message: 'Inject a clock; the core counts ticks.' },
        { name: 'setTimeout', message: 'The core counts ticks; timers live in io/.' },
        { name: 'setInterval', message: 'The core counts ticks; timers live in io/.' },
        { name: 'setImmediate', message: 'The core counts ticks; timers live in io/.' },
        { name: 'performance', message: 'Inject a clock.' },
        { name: 'process', message: 'The core must not read the environment.' },
        { name: 'fetch', message: 'The core must not do I/O.' },
        { name: 'require', message: 'ESM only.' },
      ],
      'no-restricted-properties': ['error',
        { object: 'Math', property: 'random', message: 'Inject randomness (a seeded generator).' },
      ],
    },
  },
);
