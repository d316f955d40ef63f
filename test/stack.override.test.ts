import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROMETHEUS_RULES_PATH } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { LIVE_FOR, overrideAlertmanagerConfig, overridePrometheusConfig, overrideRuleFor } from './support/stack.ts';

/* The live stack test runs the committed configs through these overrides: they may change addresses, intervals and
 * the documented `for` values, nothing else. */

const ROOT = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');
const ADDRESSES = {
  'receiver:9464': '127.0.0.1:1',
  'http://receiver:3000/healthz': 'http://127.0.0.1:2/healthz',
  'blackbox:9115': '127.0.0.1:3',
  'alertmanager:9093': '127.0.0.1:4',
};

describe('live-stack overrides of the committed configuration', () => {
  it('prometheus.yml: only addresses, intervals and the rule file change', () => {
    const committed = parse(read('prometheus/prometheus.yml'));
    const live = parse(overridePrometheusConfig(read('prometheus/prometheus.yml'), ADDRESSES, '/tmp/rules.yml'));
    expect(live.global).toEqual({ scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' });
    expect(live.rule_files).toEqual(['/tmp/rules.yml']);
    // Put the committed addresses back: everything else must be identical.
    const back = JSON.parse(
      Object.entries(ADDRESSES).reduce(
        (text, [from, to]) => text.replaceAll(`"${to}"`, `"${from}"`),
        JSON.stringify(live),
      ),
    );
    // The one structural change: DNS discovery of the receiver becomes the equivalent static target.
    const expected = structuredClone(committed);
    for (const job of expected.scrape_configs as { dns_sd_configs?: { names: string[]; port: number }[] }[]) {
      if (!job.dns_sd_configs) continue;
      Object.assign(job, {
        static_configs: job.dns_sd_configs.map((d) => ({ targets: d.names.map((n) => `${n}:${d.port}`) })),
      });
      delete job.dns_sd_configs;
    }
    expect({ ...back, global: committed.global, rule_files: committed.rule_files }).toEqual(expected);
  });

  it('prometheus.yml: a missing or unknown address fails loudly', () => {
    const { 'blackbox:9115': _, ...partial } = ADDRESSES;
    expect(() => overridePrometheusConfig(read('prometheus/prometheus.yml'), partial, '/r.yml')).toThrow(
      /blackbox:9115/,
    );
    expect(() =>
      overridePrometheusConfig(read('prometheus/prometheus.yml'), { ...ADDRESSES, 'other:1': 'x' }, '/r.yml'),
    ).toThrow(/other:1/);
  });

  it('rules: only the documented `for` values change', () => {
    const committed = parse(read(PROMETHEUS_RULES_PATH));
    const live = parse(overrideRuleFor(read(PROMETHEUS_RULES_PATH)));
    const changed: string[] = [];
    committed.groups.forEach((g: { rules: { alert?: string; for?: string }[] }, gi: number) => {
      g.rules.forEach((r, ri) => {
        const l = live.groups[gi].rules[ri];
        if (r.for !== l.for) changed.push(r.alert!);
        expect({ ...l, for: r.for }).toEqual(r);
      });
    });
    expect(changed.sort()).toEqual(Object.keys(LIVE_FOR).sort());
    expect(() => overrideRuleFor(read(PROMETHEUS_RULES_PATH), { NoSuchAlert: '0s' })).toThrow(/NoSuchAlert/);
  });

  it('alertmanager.yml: webhooks to the sink, fast timers; routes and inhibitions unchanged', () => {
    const committed = parse(read('alertmanager/alertmanager.yml'));
    const live = parse(
      overrideAlertmanagerConfig(read('alertmanager/alertmanager.yml'), 'http://127.0.0.1:9/', '/t/*.tmpl'),
    );
    expect(live.receivers.map((r: { webhook_configs: { url: string }[] }) => r.webhook_configs[0]!.url)).toEqual([
      'http://127.0.0.1:9/heartbeat',
      'http://127.0.0.1:9/critical',
      'http://127.0.0.1:9/warning',
    ]);
    expect(live.route).toEqual({ ...committed.route, group_wait: '0s', group_interval: '1s', repeat_interval: '1h' });
    expect(live.inhibit_rules).toEqual(committed.inhibit_rules);
    expect(live.templates).toEqual(['/t/*.tmpl']);
  });
});
