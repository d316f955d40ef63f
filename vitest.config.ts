import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// The workspace packages' `ccm-source` export condition points at their TypeScript sources, so tests (and the CLIs
// they spawn, through NODE_OPTIONS) run the code as it is in the tree, never a stale dist/.
const SOURCE_CONDITION = 'ccm-source';

export default defineConfig({
  resolve: { conditions: [SOURCE_CONDITION, ...defaultServerConditions] },
  ssr: { resolve: { conditions: [SOURCE_CONDITION, ...defaultServerConditions] } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=${SOURCE_CONDITION}`.trim() },
    // Two cores: stack tests start real servers, so keep file parallelism at the core count.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
