import { exec, execFile, execFileSync, execSync, fork, spawn, spawnSync } from 'node:child_process';
import { globSync, readFileSync } from 'node:fs';
import { matchesGlob, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import config from '../vitest.config.ts';
import {
  GUARD_MESSAGE,
  GUARD_TEST,
  PROCESS_FREE_EXPORTS,
  PROCESSES,
  SPAWN_GUARD,
  type STARTERS,
  UNIT,
  UNIT_LANE,
} from './lanes.ts';
import { exportsOf, importsOf, spawnRule } from './support/spawnRule.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD_PROCESS_IMPORT = /^import \{[^}]*\} from 'node:child_process';\n/m;
const TEST_FILES = globSync('test/**/*.test.ts', { cwd: ROOT }).sort();

interface Project {
  readonly name: string;
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly setupFiles: readonly string[];
}

function projects(): Project[] {
  return (config.test?.projects ?? []).map((p) => {
    if (typeof p !== 'object' || p === null || !('test' in p)) throw new Error('expected inline projects');
    const t = p.test ?? {};
    return {
      name: String(t.name),
      include: t.include ?? [],
      exclude: t.exclude ?? [],
      setupFiles: typeof t.setupFiles === 'string' ? [t.setupFiles] : (t.setupFiles ?? []),
    };
  });
}

/** The projects of vitest.config.ts that run `file`. */
function lanesOf(file: string): string[] {
  return projects()
    .filter((p) => p.include.some((g) => matchesGlob(file, g)) && !p.exclude.some((g) => matchesGlob(file, g)))
    .map((p) => p.name);
}

describe('the two test lanes (test/lanes.ts)', () => {
  it('vitest.config.ts has exactly the two projects, and sets no include or exclude that would merge into both', () => {
    expect(projects().map((p) => p.name)).toEqual([UNIT, PROCESSES]);
    expect(config.test?.include).toBeUndefined();
    expect(config.test?.exclude).toBeUndefined();
    // The guard patches node:child_process in its worker: safe only with one process per test file.
    expect(config.test?.pool ?? 'forks').toBe('forks');
    expect(config.test?.isolate ?? true).toBe(true);
    expect(projects().find((p) => p.name === UNIT)?.setupFiles).toEqual([SPAWN_GUARD]);
    expect(projects().find((p) => p.name === PROCESSES)?.setupFiles).toEqual([]);
  });

  it('runs every test file in exactly one lane, the unit lane being UNIT_LANE', () => {
    expect(TEST_FILES.length).toBeGreaterThan(40);
    const wrong = TEST_FILES.map((f) => ({ file: f, lanes: lanesOf(f) })).filter(
      ({ file, lanes }) => lanes.length !== 1 || (lanes[0] === UNIT) !== UNIT_LANE.includes(file),
    );
    expect(wrong).toEqual([]);
    expect(UNIT_LANE.filter((f) => !TEST_FILES.includes(f))).toEqual([]);
    expect(new Set(UNIT_LANE).size).toBe(UNIT_LANE.length);
  });

  it('puts a file in the unit lane exactly when it can start no process', () => {
    const guardTest = resolve(ROOT, GUARD_TEST);
    const rule = spawnRule({
      root: ROOT,
      processFree: PROCESS_FREE_EXPORTS,
      // The guard's own test, without the import it proves harmless (GUARD_TEST in test/lanes.ts).
      read: (path) => {
        const source = readFileSync(path, 'utf8');
        return path === guardTest ? source.replace(CHILD_PROCESS_IMPORT, '') : source;
      },
    });
    const misplaced: string[] = [];
    for (const file of TEST_FILES) {
      const why = rule.why(file);
      if (UNIT_LANE.includes(file) && why !== null)
        misplaced.push(`${file} is in UNIT_LANE but can start a process: ${why}`);
      if (!UNIT_LANE.includes(file) && why === null) misplaced.push(`${file} starts no process: add it to UNIT_LANE`);
    }
    expect(misplaced).toEqual([]);
    expect(readFileSync(guardTest, 'utf8')).toMatch(CHILD_PROCESS_IMPORT);
    expect(spawnRule({ root: ROOT, processFree: PROCESS_FREE_EXPORTS }).why(GUARD_TEST)).toBe(
      `${GUARD_TEST} imports node:child_process`,
    );
  });

  it('lets unit files take only exports that exist from modules that can start a process', () => {
    const rule = spawnRule({ root: ROOT, processFree: {} });
    for (const [module, names] of Object.entries(PROCESS_FREE_EXPORTS)) {
      expect(rule.why(module), module).not.toBeNull();
      const exported = exportsOf(readFileSync(resolve(ROOT, module), 'utf8'));
      expect(
        names.filter((n) => !exported.includes(n)),
        module,
      ).toEqual([]);
    }
  });

  it('makes every node:child_process starter throw in the unit lane, naming the lane', () => {
    // Each would start a node that exits at once, were the guard missing.
    const node = process.execPath;
    const shell = `"${node}" -e ""`;
    const starts: Record<(typeof STARTERS)[number], () => unknown> = {
      spawn: () => spawn(node, ['-e', '']),
      spawnSync: () => spawnSync(node, ['-e', '']),
      exec: () => exec(shell),
      execSync: () => execSync(shell),
      execFile: () => execFile(node, ['-e', '']),
      execFileSync: () => execFileSync(node, ['-e', '']),
      fork: () => fork('', [], { execArgv: ['-e', ''] }),
    };
    for (const [name, start] of Object.entries(starts)) expect(start, name).toThrow(GUARD_MESSAGE);
  });
});

describe('the spawn rule (test/support/spawnRule.ts)', () => {
  // Spelt apart, so that the rule, reading this file, does not take the fixtures for imports of its own.
  const DYNAMIC = ['im', 'port'].join('');
  const files: Record<string, string> = {
    'packages/koa/package.json': JSON.stringify({
      name: '@captcha-callback-monitor/koa',
      exports: { '.': { 'ccm-source': './src/index.ts' }, './internal': { 'ccm-source': './src/internal.ts' } },
    }),
    'packages/koa/src/index.ts': "export { thing } from './thing.ts';",
    'packages/koa/src/thing.ts': 'export const thing = 1;',
    'packages/koa/src/internal.ts': "import { fork } from 'node:child_process';\nexport const f = fork;",
    'test/support/server.ts': "import { spawn } from 'node:child_process';\nexport const parseMetrics = 1;",
    'test/support/middle.ts': "import { startServer } from './server.ts';\nexport const helper = startServer;",
    'test/support/clean.ts': "import type { RunningServer } from './server.ts';\nexport const x = 1;",
  };
  const rule = (source: string, processFree: Record<string, readonly string[]> = {}) =>
    spawnRule({
      root: '/repo',
      processFree: { 'test/support/server.ts': ['parseMetrics'], ...processFree },
      read: (path) => (path === '/repo/test/x.test.ts' ? source : files[path.slice('/repo/'.length)]),
    }).why('test/x.test.ts');

  it('reads value imports, multi-line ones too, and drops type-only ones', () => {
    expect(
      importsOf(
        [
          "import a, { b, type C, d as e } from './m.ts';",
          "import {\n  f,\n  g,\n} from './n.ts';",
          "import type { H } from './t.ts';",
          "import { type I } from './u.ts';",
          "import * as ns from './v.ts';",
          "import './side.ts';",
          "export { j } from './w.ts';",
          "export type { K } from './x.ts';",
          `const lazy = await ${DYNAMIC}('./y.ts');`,
        ].join('\n'),
      ),
    ).toEqual([
      { specifier: './m.ts', names: ['b', 'd', 'default'] },
      { specifier: './n.ts', names: ['f', 'g'] },
      { specifier: './v.ts', names: '*' },
      { specifier: './w.ts', names: ['j'] },
      { specifier: './side.ts', names: '*' },
      { specifier: './y.ts', names: '*' },
    ]);
  });

  it('finds node:child_process directly, through a helper, a namespace import, a re-export or the workspace package', () => {
    expect(rule("import { spawnSync } from 'node:child_process';")).toBe('test/x.test.ts imports node:child_process');
    expect(rule(`const cp = await ${DYNAMIC}('node:child_process');`)).toMatch(/imports node:child_process/);
    expect(rule("import {\n  parseMetrics,\n  startServer,\n} from './support/server.ts';")).toBe(
      'test/x.test.ts imports startServer from test/support/server.ts; test/support/server.ts imports node:child_process',
    );
    expect(rule("import { helper } from './support/middle.ts';")).toMatch(
      /imports helper from test\/support\/middle\.ts; .* imports startServer from test\/support\/server\.ts/,
    );
    expect(rule("import * as s from './support/server.ts';")).toMatch(/imports \* from test\/support\/server\.ts/);
    expect(rule("import { f } from '@captcha-callback-monitor/koa/internal';")).toMatch(
      /imports f from packages\/koa\/src\/internal\.ts/,
    );
  });

  it('lets through types, listed process-free exports, and modules that reach no process', () => {
    expect(rule("import { parseMetrics, type RunningServer } from './support/server.ts';")).toBeNull();
    expect(rule("import type { RunningServer } from './support/server.ts';")).toBeNull();
    expect(rule("import { x } from './support/clean.ts';")).toBeNull();
    expect(rule("import { thing } from '@captcha-callback-monitor/koa';")).toBeNull();
    expect(rule("import { readFileSync } from 'node:fs';\nimport { Worker } from 'node:worker_threads';")).toBeNull();
  });

  it('lists a module’s exported names, declared or in an export clause, without types', () => {
    expect(
      exportsOf(
        [
          'export const a = 1;',
          'export async function b() {}',
          'export function* c() {}',
          'export class D {}',
          'export interface E {}',
          'export type F = string;',
          'const g = 1;',
          'export { g, g as h, type F as I };',
        ].join('\n'),
      ),
    ).toEqual(['a', 'b', 'c', 'D', 'g', 'h']);
  });

  it('refuses a module it cannot find rather than passing it', () => {
    expect(() => rule("import { y } from './support/missing.ts';")).toThrow(/no such module/);
  });
});
