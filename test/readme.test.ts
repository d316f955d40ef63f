import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONTRACT } from '../packages/koa/src/metrics/contract.ts';
import { ALERT_TABLE } from '../src/alerting/alertTable.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every instrument and shows the two quick-start commands', () => {
    // The tables themselves are generated outputs (scripts/generators/outputs.ts), checked for drift with the others.
    for (const spec of CONTRACT) expect(readme).toContain(`\`${spec.prom}`);
    for (const alert of ALERT_TABLE) expect(readme).toContain(`\`${alert.name}\``);
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test');
  });

  it('lists every alert and severity of the alert table exactly once in its alert table', () => {
    const table = readme.slice(readme.indexOf('<!-- alerts:start -->'), readme.indexOf('<!-- alerts:end -->'));
    const rows = [...table.matchAll(/^\| \[`(\w+)`\]\([^)]*\) \| (\w+) \|/gm)].map(
      ([, name, severity]) => `${name} ${severity}`,
    );
    const expected = ALERT_TABLE.map((a) => `${a.name} ${a.severity}`);
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows).size, 'a row is repeated').toBe(rows.length);
    expect([...rows].sort()).toEqual([...expected].sort());
  });
});
