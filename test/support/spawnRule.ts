/**
 * The rule that picks a test file's lane (test/lanes.ts), read from the imports as written. A module can start a
 * process when it imports node:child_process (or node:cluster), or imports anything (a value, not a type) from a
 * repository module that can, other than that module's PROCESS_FREE_EXPORTS; a namespace, default or side-effect
 * import of such a module counts as anything. Dynamic `import('…')` and `require('…')` count as namespace imports.
 * Packages from node_modules are not followed: the unit lane's spawn guard (test/support/noSpawn.ts) catches those.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** The modules that start processes. */
export const PROCESS_MODULES: ReadonlySet<string> = new Set([
  'node:child_process',
  'child_process',
  'node:cluster',
  'cluster',
]);

export interface ImportOf {
  readonly specifier: string;
  /** The value bindings taken: export names (`default` for a default import), or `*` for the whole module. */
  readonly names: readonly string[] | '*';
}

/** Value names of an import or export clause `{ a, type B, c as d }` (type-only specifiers dropped). */
function clauseNames(clause: string): string[] {
  return clause
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && !s.startsWith('type '))
    .map((s) => s.split(/\s+as\s+/)[0]!.trim());
}

/**
 * The value imports of a module's source: static import and re-export declarations (at the start of a line, as the
 * formatter writes them; type-only ones dropped), dynamic `import('…')` and `require('…')` with a literal specifier.
 */
export function importsOf(source: string): ImportOf[] {
  const out: ImportOf[] = [];
  const declaration = /^(import|export)\s+([^;'"]*?)\s*from\s*['"]([^'"]+)['"]/gm;
  for (const m of source.matchAll(declaration)) {
    const [, keyword, clause = '', specifier = ''] = m;
    if (/^type\b/.test(clause)) continue;
    if (keyword === 'export' && !/^(\*|\{)/.test(clause)) continue;
    const names: string[] = [];
    let whole = false;
    // import X, { a } | import * as X | import { a } | export * | export * as X | export { a }
    const braces = /\{([^}]*)\}/.exec(clause);
    if (braces) names.push(...clauseNames(braces[1]!));
    const rest = clause
      .replace(/\{[^}]*\}/, '')
      .replace(/,/g, ' ')
      .trim();
    if (rest.startsWith('*')) whole = true;
    else if (rest !== '') names.push('default');
    if (whole) out.push({ specifier, names: '*' });
    else if (names.length > 0) out.push({ specifier, names });
  }
  for (const m of source.matchAll(/^import\s*['"]([^'"]+)['"]/gm)) out.push({ specifier: m[1]!, names: '*' });
  for (const m of source.matchAll(/\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    out.push({ specifier: m[1]!, names: '*' });
  }
  return out;
}

/** The names a module exports by declaration (`export function f`, `export const c`, …) or `export { a, b as c }`. */
export function exportsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/^export\s+(?:async\s+)?(?:function\*?|const|let|var|class)\s+([\w$]+)/gm))
    out.push(m[1]!);
  for (const m of source.matchAll(/^export\s*\{([^}]*)\}/gm)) {
    for (const specifier of m[1]!.split(',')) {
      const [name, alias] = specifier.trim().split(/\s+as\s+/);
      if (name && !name.startsWith('type ')) out.push((alias ?? name).trim());
    }
  }
  return out;
}

export interface SpawnRuleOptions {
  /** The repository root; module paths in reasons and in `processFree` are relative to it. */
  readonly root: string;
  /** Exports, per module, that start no process though their module can. */
  readonly processFree: Readonly<Record<string, readonly string[]>>;
  /** Reads a module's source (default: from disk). */
  readonly read?: (path: string) => string | undefined;
}

/**
 * Decides, for any module of the repository, whether it can start a process, and why: the chain of imports that leads
 * to node:child_process. Results are cached per module.
 */
export function spawnRule(options: SpawnRuleOptions) {
  const { root, processFree } = options;
  const read = options.read ?? ((path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : undefined));
  /** Answers per module: a reason, or null (cannot); absent while unknown. */
  const cache = new Map<string, string | null>();
  const workspace = new Map<string, string>();
  const pkgPath = join(root, 'packages/koa/package.json');
  const pkgText = read(pkgPath);
  if (pkgText) {
    const pkg = JSON.parse(pkgText) as { name: string; exports: Record<string, string | Record<string, string>> };
    for (const [sub, target] of Object.entries(pkg.exports)) {
      const source = typeof target === 'string' ? undefined : target['ccm-source'];
      if (source) workspace.set(sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`, join(dirname(pkgPath), source));
    }
  }

  /** The repository file a specifier names, or undefined for a package or a built-in module. */
  function resolveSpecifier(from: string, specifier: string): string | undefined {
    if (specifier.startsWith('.')) return resolve(dirname(from), specifier);
    return workspace.get(specifier);
  }

  /**
   * Why the module at `path` can start a process, or null when it cannot; `cut` when the answer skipped a module
   * already on the import path (a cycle), so a null holds only for this walk and is not cached.
   */
  function walk(path: string, onPath: ReadonlySet<string>): { reason: string | null; cut: boolean } {
    const cached = cache.get(path);
    if (cached !== undefined) return { reason: cached, cut: false };
    if (onPath.has(path)) return { reason: null, cut: true };
    if (!/\.[cm]?[jt]s$/.test(path)) return { reason: null, cut: false };
    const rel = relative(root, path);
    const source = read(path);
    if (source === undefined) throw new Error(`${rel}: no such module`);
    const inner = new Set(onPath).add(path);
    let reason: string | null = null;
    let cut = false;
    for (const { specifier, names } of importsOf(source)) {
      if (PROCESS_MODULES.has(specifier)) {
        reason = `${rel} imports ${specifier}`;
        break;
      }
      const target = resolveSpecifier(path, specifier);
      if (target === undefined) continue;
      const free = processFree[relative(root, target)] ?? [];
      const taken = names === '*' ? ['*'] : names.filter((n) => !free.includes(n));
      if (taken.length === 0) continue;
      const sub = walk(target, inner);
      cut ||= sub.cut;
      if (sub.reason === null) continue;
      reason = `${rel} imports ${taken.join(', ')} from ${relative(root, target)}; ${sub.reason}`;
      break;
    }
    if (reason !== null || !cut) cache.set(path, reason);
    return { reason, cut: reason === null && cut };
  }

  return {
    /** Why `path` (absolute, or relative to the root) can start a process, or null when it cannot. */
    why: (path: string) => walk(resolve(root, path), new Set()).reason,
  };
}
