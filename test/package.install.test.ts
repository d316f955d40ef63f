import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The Koa package as a user gets it: built and packed with `npm pack` from a copy of packages/koa (so nothing in the
 * tree is touched), installed from the tarball into a scratch Koa app in a temporary folder (no workspace links),
 * type-checked with `tsc --strict` and run. The app creates the monitor before its own OpenTelemetry SDK starts; the
 * callback must show up in the app's own Prometheus exporter output. Once with @opentelemetry/api at the lowest
 * version the package supports, once at the newest. Needs the npm registry (reachable here; without it this fails).
 */

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const PACKAGE = join(ROOT, 'packages/koa');
const INSTALL_TIMEOUT_MS = 480_000;

/** Each end of the supported @opentelemetry/api range, with an SDK and exporter of that era. */
const API_ENDS = [
  { api: '1.7.0', sdk: '1.30.1', exporter: '0.57.2' },
  { api: '1.10.0', sdk: '3.1.0', exporter: '0.301.0' },
] as const;

/** Server-side dependencies the plugin must never pull into an app. */
const SERVER_ONLY = ['@opentelemetry/sdk-node', 'ioredis', 'pino', 'zod', '@koa/router'];

const APP = `
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import Koa from 'koa';
import { CallbackMonitor, type CallbackResult } from '@captcha-callback-monitor/koa';
import { SqliteTaskStore } from '@captcha-callback-monitor/koa/sqlite';

const dbPath: string = process.env.DB ?? 'callbacks.db';
// The monitor first, the SDK after it: the order an app that mounts middleware at import time has.
const monitor = new CallbackMonitor({
  store: new SqliteTaskStore(dbPath),
  onResult: (result: CallbackResult) => {
    if (result.taskId) received.push(result.taskId);
  },
});
const received: string[] = [];

const exporter = new PrometheusExporter({ preventServerStart: true });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));

const app = new Koa();
app.use(monitor.middleware());
app.use((ctx) => {
  ctx.body = { received };
});
const server = app.listen(0, '127.0.0.1');
const metricsServer = createServer((req, res) => exporter.getMetricsRequestHandler(req, res));
metricsServer.listen(0, '127.0.0.1');
await Promise.all([server, metricsServer].map((s) => new Promise((r) => s.once('listening', r))));
monitor.start();
console.log(JSON.stringify({
  app: (server.address() as AddressInfo).port,
  metrics: (metricsServer.address() as AddressInfo).port,
}));
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'es2024',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    strict: true,
    noEmit: true,
    types: ['node'],
    allowImportingTsExtensions: true,
    skipLibCheck: false,
  },
  include: ['app.ts'],
};

let work: string;
let tarball: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ccm-pack-'));
  const copy = join(work, 'koa');
  mkdirSync(copy);
  for (const entry of ['package.json', 'README.md', 'src'])
    cpSync(join(PACKAGE, entry), join(copy, entry), { recursive: true });
  const base = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
  const build = JSON.parse(readFileSync(join(PACKAGE, 'tsconfig.build.json'), 'utf8'));
  writeFileSync(
    join(copy, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { ...base.compilerOptions, ...build.compilerOptions }, include: ['src'] }),
  );
  // The compiler finds the peers' types in the repository's node_modules; npm pack never includes node_modules.
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
  await run(process.execPath, [TSC, '-p', join(copy, 'tsconfig.json')], { cwd: copy });
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
    cwd: copy,
  });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work, packed!.filename);
  const files = packed!.files.map((f) => f.path);
  // The tarball holds the compiled entry points with their types, nothing from the sources or the tests.
  for (const entry of ['index', 'sqlite', 'redis']) {
    expect(files).toContain(`dist/${entry}.js`);
    expect(files).toContain(`dist/${entry}.d.ts`);
  }
  expect(files.filter((f) => f.startsWith('src/') || f.endsWith('.map'))).toEqual([]);
  // Self-contained types: no declaration imports koa (whose types are not a dependency of anyone's app by default).
  const koaImports = files
    .filter((f) => f.endsWith('.d.ts'))
    .filter((f) => /from '(koa|@types\/koa)'/.test(readFileSync(join(copy, f), 'utf8')));
  expect(koaImports).toEqual([]);
}, INSTALL_TIMEOUT_MS);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the server package', () => {
  it('ships the compiled server, the generated rules, dashboards and runbook, and no build tools or sources', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const [packed] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
    const files = packed!.files.map((f) => f.path);
    for (const advertised of [
      'dist/server/cli.js',
      'prometheus/rules/captcha-callback.rules.yml',
      'prometheus/kubernetes/captcha-callback.prometheusrule.yml',
      'grafana/dashboards/captcha-callback-overview.json',
      'grafana/import/captcha-callback-overview.json',
      'grafana/provisioning/alerting/captcha-callback.rules.yaml',
      'docs/runbook.md',
    ]) {
      expect(files).toContain(advertised);
    }
    // Generators are build tools (scripts/); a dist/ file from them would be a stale build or a generator in src/.
    const buildTools = files.filter(
      (f) =>
        /^(scripts|src|test|bench|packages)\//.test(f) || /^dist\/(dashboards|docs)\//.test(f) || f.endsWith('.map'),
    );
    expect(buildTools).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(manifest.dependencies['@captcha-callback-monitor/koa']).toBe(
      JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8')).version,
    );
  });
});

describe('the packed Koa package in a scratch app', () => {
  it('declares only peers: @opentelemetry/api and koa, ioredis optional', async () => {
    const manifest = JSON.parse(
      (await run('tar', ['-xOzf', tarball, 'package/package.json'], { maxBuffer: 1 << 20 })).stdout,
    );
    expect(manifest.dependencies ?? {}).toEqual({});
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual(['@opentelemetry/api', 'ioredis', 'koa']);
    expect(manifest.peerDependenciesMeta.ioredis.optional).toBe(true);
    expect(manifest.peerDependencies['@opentelemetry/api']).toMatch(
      new RegExp(`^>=${API_ENDS[0].api.replaceAll('.', '\\.')} `),
    );
  });

  it.each(API_ENDS)(
    'with @opentelemetry/api $api: installs without server packages, type-checks strictly, reports a callback',
    async ({ api, sdk, exporter }) => {
      const app = join(work, `app-${api}`);
      mkdirSync(app);
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
      writeFileSync(join(app, 'app.ts'), APP);
      writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
      const install = (args: string[]) =>
        run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...args], {
          cwd: app,
          timeout: INSTALL_TIMEOUT_MS,
        });
      await install([
        tarball,
        'koa@3',
        `@opentelemetry/api@${api}`,
        `@opentelemetry/sdk-metrics@${sdk}`,
        `@opentelemetry/exporter-prometheus@${exporter}`,
      ]);
      await install(['--save-dev', '@types/koa@3', '@types/node@24']);
      const installed = JSON.parse(readFileSync(join(app, 'node_modules/@opentelemetry/api/package.json'), 'utf8'));
      expect(installed.version).toBe(api);

      const { stdout: tree } = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: app });
      const names = tree.split('\n').map((p) => p.slice(p.lastIndexOf('node_modules/') + 'node_modules/'.length));
      expect(names).toContain('@captcha-callback-monitor/koa');
      for (const serverOnly of SERVER_ONLY) expect(names).not.toContain(serverOnly);
      // One copy of the API: the app's. A second copy is what left apps with "no registered metrics".
      expect(readdirSync(join(app, 'node_modules/@captcha-callback-monitor/koa'))).not.toContain('node_modules');

      await run(process.execPath, [TSC, '-p', join(app, 'tsconfig.json')], { cwd: app });

      const child = execFile(process.execPath, ['app.ts'], {
        cwd: app,
        env: { PATH: process.env.PATH, DB: join(app, 'cb.db') },
      });
      try {
        const ports = await new Promise<{ app: number; metrics: number }>((resolvePorts, reject) => {
          let out = '';
          let err = '';
          child.stdout!.on('data', (c: Buffer) => {
            out += c.toString();
            const line = out.split('\n').find((l) => l.startsWith('{'));
            if (line) resolvePorts(JSON.parse(line));
          });
          child.stderr!.on('data', (c: Buffer) => {
            err += c.toString();
          });
          child.once('exit', (code) => reject(new Error(`scratch app exited with ${code}: ${err}`)));
        });
        const base = `http://127.0.0.1:${ports.app}`;
        const callback = await fetch(`${base}/callback/app-task-1?id=solver-9&code=03AGdBq2x`);
        expect(callback.status).toBe(200);
        // The app's own routes still answer after the middleware.
        expect(await (await fetch(`${base}/other`)).json()).toEqual({ received: ['app-task-1'] });
        const text = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
        // Exporters before 0.200 name an observable counter without the `_total` suffix; both are the same series.
        const solved = text
          .split('\n')
          .find(
            (l) =>
              /^captcha_callbacks(_total)?\{/.test(l) && l.includes('outcome="solved"') && l.includes('format="query"'),
          );
        expect(solved, text.slice(0, 2000)).toMatch(/ 1$/);
        // The contract's buckets (advice) reached the app's SDK; one request recorded.
        expect(text).toMatch(
          /^captcha_callback_duration_bucket\{http_response_status_code="200",.*le="0\.005"\} [01]$/m,
        );
        expect(text).toMatch(/^captcha_callback_duration_count\{http_response_status_code="200".*\} 1$/m);
      } finally {
        child.kill('SIGKILL');
      }
    },
    INSTALL_TIMEOUT_MS,
  );
});
