import { execFileSync } from 'node:child_process';

/**
 * Returns the absolute path of a system binary the stack tests need, or throws. A missing binary fails the test:
 * it is never a reason to skip (`.ci/run` installs every one of them).
 */
export function requireBinary(name: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`required binary "${name}" is not installed; run .ci/run (it installs the Debian packages)`);
  }
}
