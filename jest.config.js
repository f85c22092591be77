/** Jest for ESM TypeScript: @swc/jest strips types (tsc checks them separately in `npm test`). */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } }],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/', '/test/k8s/tools/', '<rootDir>/.tools/', '<rootDir>/.local-cluster/'],
  modulePathIgnorePatterns: ['<rootDir>/.tools/', '<rootDir>/.local-cluster/'],
  testTimeout: 60000,
};
