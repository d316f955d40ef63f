import { defaultServerConditions } from 'vite';
import { configDefaults, defineConfig } from 'vitest/config';
import { PROCESSES, SPAWN_GUARD, UNIT, UNIT_LANE } from './test/lanes.ts';

// The workspace packages' `ccm-source` export condition points at their TypeScript sources, so tests (and the CLIs
// they spawn, through NODE_OPTIONS) run the code as it is in the tree, never a stale dist/.
const SOURCE_CONDITION = 'ccm-source';

export default defineConfig({
  resolve: { conditions: [SOURCE_CONDITION, ...defaultServerConditions] },
  ssr: { resolve: { conditions: [SOURCE_CONDITION, ...defaultServerConditions] } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=${SOURCE_CONDITION}`.trim() },
    // Two cores: stack tests start real servers, so keep file parallelism at the core count.
    maxWorkers: 2,
    reporters: ['default'],
    // Two lanes (test/lanes.ts), every test file in exactly one: `vitest run` runs both (npm test, the full suite);
    // `vitest run --project unit` only the files that start no process (npm run test:unit). No include or exclude
    // here: the projects' own would be merged with them.
    projects: [
      { extends: true, test: { name: UNIT, include: [...UNIT_LANE], setupFiles: [SPAWN_GUARD] } },
      {
        extends: true,
        test: { name: PROCESSES, include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...UNIT_LANE] },
      },
    ],
  },
});
