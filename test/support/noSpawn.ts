/**
 * The unit lane's setup file (test/lanes.ts): every function of node:child_process that starts a process throws, so a
 * file that starts one fails at once, naming the lane, instead of running in the fast lane unnoticed. Each test file
 * runs in a fresh worker, so the processes lane never sees this.
 */
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { GUARD_MESSAGE, STARTERS } from '../lanes.ts';

const exports = childProcess as unknown as Record<string, unknown>;
for (const name of STARTERS) {
  exports[name] = () => {
    throw new Error(
      `${name}(): ${GUARD_MESSAGE}; a test file that starts one belongs in the processes lane (take it out of UNIT_LANE in test/lanes.ts)`,
    );
  };
}
// The named ESM exports (`import { spawn } from 'node:child_process'`) follow the module object only after this.
syncBuiltinESMExports();
