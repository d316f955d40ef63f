import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderReadme } from '../scripts/readmeTables.ts';
import { CONTRACT } from '../src/metrics/contract.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('carries the metric contract and configuration tables exactly as rendered from the code (npm run generate)', () => {
    expect(readme).toBe(renderReadme(readme));
  });

  it('documents every instrument and shows the two quick-start commands', () => {
    for (const spec of CONTRACT) expect(readme).toContain(`\`${spec.prom}`);
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test');
  });
});
