/** Jest runs the TypeScript sources as native ESM (the @octokit packages are ESM-only). */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true }],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/tests/**/*.test.ts'],
  setupFiles: ['<rootDir>/tests/support/isolateTemp.ts'],
  setupFilesAfterEnv: ['<rootDir>/tests/support/removeTemp.ts'],
  testTimeout: 30000,
  maxWorkers: 2,
};
