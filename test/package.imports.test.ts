import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * What each package's runtime sources may import: Node built-ins, their own files, and what their package.json
 * declares for runtime (dependencies and peers). A generator or a dev dependency imported from runtime code would
 * ship in dist/ and break at install time, so this fails on it.
 */

const ROOT = resolve(import.meta.dirname, '..');

const PACKAGES = [
  { dir: 'packages/koa', sources: 'packages/koa/src' },
  { dir: '.', sources: 'src' },
] as const;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every module specifier a file imports or re-exports, type-only ones included (they reach the published types). */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [
    ...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm),
    ...text.matchAll(/import\('([^']+)'\)/g),
  ].map((m) => m[1]!);
}

const packageName = (specifier: string) =>
  specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;

describe.each(PACKAGES)('runtime imports of $sources', ({ dir, sources }) => {
  const manifest = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8'));
  const runtime = new Set([
    ...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {}),
  ]);
  const files = tsFiles(join(ROOT, sources));

  it('has sources to check', () => {
    expect(files.length).toBeGreaterThan(5);
  });

  it('imports only Node built-ins, its own files and declared runtime dependencies', () => {
    const offending: string[] = [];
    for (const file of files) {
      for (const specifier of specifiers(file)) {
        const where = `${relative(ROOT, file)}: ${specifier}`;
        if (specifier.startsWith('.')) {
          const target = resolve(file, '..', specifier);
          if (relative(join(ROOT, sources), target).startsWith('..')) offending.push(`${where} (outside ${sources})`);
        } else if (specifier.startsWith('node:') || builtinModules.includes(specifier)) {
          // a built-in
        } else if (!runtime.has(packageName(specifier))) {
          offending.push(`${where} (not a dependency or peer of ${manifest.name})`);
        }
      }
    }
    expect(offending).toEqual([]);
  });
});
