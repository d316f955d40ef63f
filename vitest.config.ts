import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: stack tests start real servers, so keep file parallelism at the core count.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
