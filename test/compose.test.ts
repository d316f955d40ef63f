import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  GRAFANA_MODE_PROMETHEUS_RULES_PATH,
  GRAFANA_RULE_DELETIONS_PATH,
} from '../scripts/generators/alerting/grafanaRules.ts';
import { DATASOURCES, SCRAPE_INTERVAL } from '../scripts/generators/dashboards/datasources.ts';
import { OVERVIEW_UID } from '../scripts/generators/dashboards/overview.ts';
import { requireBinary } from './support/binaries.ts';
import { SOURCE_CONDITION } from './support/server.ts';

const ROOT = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');
const BASE = 'docker-compose.yml';
const GRAFANA_ALERTING = 'docker-compose.grafana-alerting.yml';
const GRAFANA_ALERTING_OFF = 'docker-compose.grafana-alerting-off.yml';
const PROFILES = [[], ['scale'], ['demo'], ['scale', 'demo']] as const;
const PASSWORD = 'test-only-password';
/** An empty env file (docker-compose 1.29 refuses /dev/null: "not a file"). */
const NO_ENV_FILE = join(mkdtempSync(join(tmpdir(), 'ccm-noenv-')), '.env');
writeFileSync(NO_ENV_FILE, '');

interface Service {
  image?: string;
  build?: { context: string };
  profiles?: string[];
  command?: string[] | string;
  entrypoint?: string[];
  environment?: Record<string, string | null>;
  ports?: (string | { target: number; published: number | string; host_ip?: string })[];
  volumes?: (string | { type: string; source: string; target: string; read_only?: boolean })[];
  healthcheck?: { test: string[] | string };
  networks?: Record<string, { aliases?: string[] } | null>;
  depends_on?: Record<string, unknown> | string[];
}
interface ComposeConfig {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

function compose(files: readonly string[], profiles: readonly string[], env: Record<string, string>, args: string[]) {
  const bin = requireBinary('docker-compose');
  return spawnSync(
    bin,
    [
      ...files.flatMap((f) => ['-f', resolve(ROOT, f)]),
      ...profiles.flatMap((p) => ['--profile', p]),
      // A developer's own .env beside the files (docs/stack.md has them make one) must not leak into the tests.
      ...(args.includes('--env-file') ? [] : ['--env-file', NO_ENV_FILE]),
      ...args,
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
      // Only what the files need: no GRAFANA_ADMIN_PASSWORD or STORE_URL from the developer's shell.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    },
  );
}

/** The resolved configuration, as docker-compose 1.29 computes it offline (interpolated, overrides merged). */
function resolved(files: readonly string[], env: Record<string, string> = {}): ComposeConfig {
  const r = compose(files, [], { GRAFANA_ADMIN_PASSWORD: PASSWORD, ...env }, ['config']);
  expect(r.status, r.stderr).toBe(0);
  return parse(r.stdout) as ComposeConfig;
}

/** `source:target[:mode]` or the long form → { source, target } (bind sources are absolute after `config`). */
function mounts(service: Service): { source: string; target: string; bind: boolean }[] {
  return (service.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source, target: v.target, bind: v.type === 'bind' };
    const [source = '', target = ''] = v.split(':');
    return { source, target, bind: source.startsWith('/') || source.startsWith('.') };
  });
}

const base = resolved([BASE]);
const withGrafanaAlerting = resolved([BASE, GRAFANA_ALERTING]);
const withGrafanaAlertingOff = resolved([BASE, GRAFANA_ALERTING_OFF]);
const mountOf = (cfg: ComposeConfig, service: string, target: string) =>
  mounts(cfg.services[service]!).find((m) => m.target === target);

describe('docker compose files (validated offline by docker-compose config)', () => {
  for (const files of [[BASE], [BASE, GRAFANA_ALERTING], [BASE, GRAFANA_ALERTING_OFF]]) {
    for (const profiles of PROFILES) {
      it(`${files.join(' + ')} with profiles [${profiles.join(', ')}] is valid`, () => {
        const r = compose(files, profiles, { GRAFANA_ADMIN_PASSWORD: PASSWORD }, ['config', '-q']);
        expect(r.status, r.stderr).toBe(0);
      });
    }
  }

  it('refuses to start without a Grafana admin password (no default left in place)', () => {
    const r = compose([BASE], [], {}, ['config', '-q']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('GRAFANA_ADMIN_PASSWORD');
    expect(read(BASE)).not.toMatch(/GF_SECURITY_ADMIN_PASSWORD:\s*['"]?\w/);
    expect(base.services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD).toBe(PASSWORD);
  });

  it('mounts only files and directories that exist in the repository', () => {
    for (const cfg of [base, withGrafanaAlerting, withGrafanaAlertingOff]) {
      for (const [name, service] of Object.entries(cfg.services)) {
        for (const m of mounts(service).filter((x) => x.bind)) {
          expect(existsSync(m.source), `${name}: ${m.source} → ${m.target}`).toBe(true);
          expect(m.source.startsWith(ROOT), `${name}: ${m.source} is outside the repository`).toBe(true);
        }
        if (service.build) expect(existsSync(resolve(service.build.context, 'Dockerfile')), name).toBe(true);
      }
    }
  });

  it('mounts the committed configs where they reference each other', () => {
    expect(mountOf(base, 'prometheus', '/etc/prometheus/prometheus.yml')?.source).toBe(
      resolve(ROOT, 'prometheus/prometheus.yml'),
    );
    // prometheus.yml loads `rules/*.yml` relative to itself.
    const prom = parse(read('prometheus/prometheus.yml')) as { rule_files: string[] };
    expect(prom.rule_files).toEqual(['rules/*.yml']);
    expect(mountOf(base, 'prometheus', '/etc/prometheus/rules')?.source).toBe(resolve(ROOT, 'prometheus/rules'));
    // alertmanager.yml loads `templates/*.tmpl` relative to itself.
    const am = parse(read('alertmanager/alertmanager.yml')) as { templates: string[] };
    expect(am.templates).toEqual(['templates/*.tmpl']);
    expect(mountOf(base, 'alertmanager', '/etc/alertmanager/alertmanager.yml')?.source).toBe(
      resolve(ROOT, 'alertmanager/alertmanager.yml'),
    );
    expect(mountOf(base, 'alertmanager', '/etc/alertmanager/templates')?.source).toBe(
      resolve(ROOT, 'alertmanager/templates'),
    );
    const blackboxConfig = mountOf(base, 'blackbox', '/etc/blackbox_exporter/config.yml');
    expect(blackboxConfig?.source).toBe(resolve(ROOT, 'blackbox/blackbox.yml'));
    expect(String(base.services.blackbox?.command)).toContain('--config.file=/etc/blackbox_exporter/config.yml');
    // The dashboard provider reads the directory the generated dashboards are mounted at.
    const provider = parse(read('grafana/provisioning/dashboards/dashboards.yaml')) as {
      providers: { type: string; options: { path: string } }[];
    };
    expect(provider.providers[0]?.type).toBe('file');
    const dashboardsMount = mounts(base.services.grafana!).find(
      (m) => m.source === resolve(ROOT, 'grafana/dashboards'),
    );
    expect(dashboardsMount?.target).toBe(provider.providers[0]?.options.path);
    expect(base.services.grafana?.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(
      `${dashboardsMount?.target}/${OVERVIEW_UID}.json`,
    );
  });

  it('uses the host names and ports the committed configs use', () => {
    const names = new Set<string>();
    for (const [name, s] of Object.entries(base.services)) {
      names.add(name);
      for (const net of Object.values(s.networks ?? {})) for (const a of net?.aliases ?? []) names.add(a);
    }
    const hostPort = (url: string) => new URL(url.includes('://') ? url : `http://${url}`).host;
    const prom = parse(read('prometheus/prometheus.yml')) as {
      global: { scrape_interval: string };
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
      scrape_configs: {
        static_configs?: { targets: string[] }[];
        dns_sd_configs?: { names: string[]; port: number }[];
        relabel_configs?: { replacement?: string }[];
      }[];
    };
    const addresses = [
      ...prom.alerting.alertmanagers.flatMap((a) => a.static_configs.flatMap((c) => c.targets)),
      ...prom.scrape_configs.flatMap((j) => (j.static_configs ?? []).flatMap((c) => c.targets)),
      ...prom.scrape_configs.flatMap((j) =>
        (j.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`)),
      ),
      ...prom.scrape_configs.flatMap((j) => (j.relabel_configs ?? []).map((r) => r.replacement ?? '')).filter(Boolean),
      ...Object.values(DATASOURCES).map((d) => d.url),
    ];
    const am = read('alertmanager/alertmanager.yml');
    addresses.push(...[...am.matchAll(/url: (http:\/\/[^\s]+)/g)].map((m) => m[1]!));
    for (const address of addresses) expect(names, address).toContain(new URL(`http://${hostPort(address)}`).hostname);
    // Grafana's $__rate_interval needs Prometheus's scrape interval.
    expect(prom.global.scrape_interval).toBe(SCRAPE_INTERVAL);
    // The webhook sink listens where alertmanager.yml sends.
    const sinkPorts = [...am.matchAll(/url: http:\/\/alert-sink:(\d+)\//g)].map((m) => m[1]);
    expect(new Set(sinkPorts)).toEqual(new Set([base.services['alert-sink']?.environment?.ALERT_SINK_PORT]));
  });

  it('pins every image version and gives every long-running service a health check', () => {
    for (const [name, s] of Object.entries(base.services)) {
      // Images built here are tagged locally; the rest come from a registry and carry an exact version.
      if (!s.build) expect(s.image, name).toMatch(/^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$/);
      if (name !== 'demo') expect(s.healthcheck?.test, `${name} has no healthcheck`).toBeTruthy();
    }
  });

  it('keeps state on named volumes', () => {
    const named = (service: string, target: string) => {
      const m = mountOf(base, service, target);
      expect(m?.bind, `${service} ${target}`).toBe(false);
      expect(Object.keys(base.volumes ?? {})).toContain(m?.source);
    };
    named('receiver', '/app/data');
    named('prometheus', '/prometheus');
    named('alertmanager', '/alertmanager');
    named('grafana', '/var/lib/grafana');
    named('redis', '/data');
    expect(base.services.receiver?.environment?.STORE_URL).toBe('sqlite:/app/data/callbacks.db');
  });

  it('publishes only the callback port beyond loopback', () => {
    for (const [name, s] of Object.entries(base.services)) {
      for (const p of s.ports ?? []) {
        const published = typeof p === 'string' ? p : `${p.host_ip ?? ''}:${p.published}:${p.target}`;
        if (name === 'receiver' && published.endsWith(':3000')) continue;
        expect(published, `${name} publishes ${published}`).toMatch(/^127\.0\.0\.1:/);
      }
    }
  });

  it('scale profile: two receivers on one Redis store, both answering as `receiver` for the same scrape job', () => {
    const scaled = resolved([BASE], { STORE_URL: 'redis://redis:6379/0' });
    const r1 = scaled.services.receiver!;
    const r2 = scaled.services['receiver-2']!;
    expect(r2.profiles).toEqual(['scale']);
    expect(scaled.services.redis?.profiles).toEqual(['scale']);
    expect(r1.environment?.STORE_URL).toBe('redis://redis:6379/0');
    expect(r2.environment?.STORE_URL).toBe(r1.environment?.STORE_URL);
    expect(r2.image).toBe(r1.image);
    expect(r1.networks?.default?.aliases).toContain('receiver');
    expect(r2.networks?.default?.aliases).toContain('receiver');
  });

  it('demo profile runs the traffic generator against the receiver', () => {
    const demo = base.services.demo!;
    expect(demo.profiles).toEqual(['demo']);
    expect(demo.command).toEqual(['demo']);
    expect(demo.image).toBe(base.services.receiver?.image);
    expect(demo.environment?.DEMO_MANAGEMENT_URL).toBe('http://receiver:9464');
    expect(demo.environment?.DEMO_CALLBACK_URL).toBe('http://receiver:3000/callback');
  });

  it('Grafana-managed alerting is opt-in and replaces the Prometheus alerting rules (no alert notified twice)', () => {
    const alertingDir = resolve(ROOT, 'grafana/provisioning/alerting');
    expect(mounts(base.services.grafana!).some((m) => m.source === alertingDir)).toBe(false);
    expect(mountOf(withGrafanaAlerting, 'grafana', '/etc/grafana/provisioning/alerting')?.source).toBe(alertingDir);
    const rules = mountOf(withGrafanaAlerting, 'prometheus', '/etc/prometheus/rules');
    expect(rules?.source).toBe(resolve(ROOT, GRAFANA_MODE_PROMETHEUS_RULES_PATH, '..'));
    expect(
      mounts(withGrafanaAlerting.services.prometheus!).filter((m) => m.target === '/etc/prometheus/rules'),
    ).toHaveLength(1);
    // That directory holds recording rules only.
    for (const f of ['captcha-callback.recordings.yml']) {
      expect(statSync(resolve(rules!.source, f)).isFile()).toBe(true);
      expect(readFileSync(resolve(rules!.source, f), 'utf8')).not.toMatch(/^\s*- alert:/m);
    }
  });

  it('switching back mounts the rule deletions in place of the rules, and the Prometheus alerting rules again', () => {
    expect(mountOf(withGrafanaAlertingOff, 'grafana', '/etc/grafana/provisioning/alerting')?.source).toBe(
      resolve(ROOT, GRAFANA_RULE_DELETIONS_PATH, '..'),
    );
    expect(mountOf(withGrafanaAlertingOff, 'prometheus', '/etc/prometheus/rules')?.source).toBe(
      resolve(ROOT, 'prometheus/rules'),
    );
    expect(readdirSync(resolve(ROOT, GRAFANA_RULE_DELETIONS_PATH, '..'))).toEqual(['captcha-callback.delete.yaml']);
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');

  it('runs on node:24-slim as a non-root user, with a Node health check on /healthz (no curl)', () => {
    const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    expect(froms.length).toBeGreaterThan(0);
    for (const image of froms) expect(image).toMatch(/^node:24(\.\d+){0,2}-slim$/);
    const users = [...dockerfile.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    expect(users.at(-1)).toBe('node');
    const health = /^HEALTHCHECK[\s\S]*?CMD \[(.*)\]$/m.exec(dockerfile)?.[1] ?? '';
    expect(health).toContain('"node"');
    expect(health).toContain('/healthz');
    expect(health).not.toMatch(/\bcurl\b|\bwget\b/);
    expect(dockerfile).not.toMatch(/^RUN .*(apt-get|curl|wget)/m);
    expect(dockerfile).toMatch(/^VOLUME \["\/app\/data"\]/m);
    expect(dockerfile).toMatch(/STORE_URL=sqlite:\/app\/data\/callbacks\.db/);
  });

  it('copies only what .dockerignore lets in, and the build runs the real CLI', () => {
    const ignore = read('.dockerignore');
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) {
        expect(existsSync(resolve(ROOT, src)), src).toBe(true);
        expect(ignore, `${src} is excluded from the build context`).toContain(`!${src.replace(/^\.\//, '')}`);
      }
    }
    expect(dockerfile).toContain('ENTRYPOINT ["node", "dist/server/cli.js"]');
    // The alert sink the compose file runs from the same image is compiled too.
    expect(existsSync(resolve(ROOT, 'src/demo/alertSink.ts'))).toBe(true);
    expect(base.services['alert-sink']?.entrypoint).toEqual(['node', 'dist/demo/alertSink.js']);
    // The image's CLI answers (the same code the container runs, from source here).
    const help = execFileSync(
      process.execPath,
      [SOURCE_CONDITION, resolve(ROOT, 'src/server/cli.ts'), 'demo', '--help'],
      {
        encoding: 'utf8',
      },
    );
    expect(help).toContain('DEMO_CALLBACK_URL');
  });
});

describe('.env.example: every compose command works from a .env file, with nothing exported', () => {
  const example = read('.env.example');
  /** Variables the compose files interpolate. */
  const interpolated = [BASE, GRAFANA_ALERTING, GRAFANA_ALERTING_OFF]
    .flatMap((f) => [...read(f).matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!))
    .filter((v, i, all) => all.indexOf(v) === i);
  const envFile = (text: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'ccm-env-'));
    writeFileSync(join(dir, '.env'), text);
    return { path: join(dir, '.env'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  };

  it('lists every variable the compose files read, and .env is git-ignored', () => {
    expect(interpolated.length).toBeGreaterThan(10);
    for (const v of interpolated) expect(example, v).toMatch(new RegExp(`^#? ?${v}=`, 'm'));
    expect(read('.gitignore').split('\n')).toContain('.env');
  });

  it('as copied it is refused until the password is filled in (no default password ships)', () => {
    const env = envFile(example);
    try {
      const r = compose([BASE], [], {}, ['--env-file', env.path, 'config', '-q']);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('GRAFANA_ADMIN_PASSWORD');
    } finally {
      env.cleanup();
    }
  });

  it('with the password filled in, the files resolve for every profile without GRAFANA_ADMIN_PASSWORD in the environment', () => {
    const env = envFile(example.replace(/^GRAFANA_ADMIN_PASSWORD=.*$/m, `GRAFANA_ADMIN_PASSWORD=${PASSWORD}`));
    try {
      for (const profiles of PROFILES) {
        // compose() passes only PATH and HOME: nothing is exported.
        const r = compose([BASE], profiles, {}, ['--env-file', env.path, 'config']);
        expect(r.status, r.stderr).toBe(0);
        const cfg = parse(r.stdout) as ComposeConfig;
        expect(cfg.services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD).toBe(PASSWORD);
      }
    } finally {
      env.cleanup();
    }
  });

  it('the receivers listen for Prometheus on the stack network; the host sees the management port on loopback only', () => {
    const scaled = resolved([BASE], { STORE_URL: 'redis://redis:6379/0' });
    for (const name of ['receiver', 'receiver-2']) {
      expect(scaled.services[name]?.environment?.MANAGEMENT_HOST, name).toBe('0.0.0.0');
    }
    const published = (base.services.receiver?.ports ?? []).map((p) =>
      typeof p === 'string' ? p : `${p.host_ip ?? ''}:${p.published}:${p.target}`,
    );
    // docker-compose 1.29 writes this one in the short form, with the protocol.
    expect(published.filter((p) => /:9464(\/tcp)?$/.test(p))).toEqual(['127.0.0.1:9464:9464/tcp']);
  });
});
