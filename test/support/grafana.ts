/**
 * What the Grafana tests (test/dashboards.test.ts, test/grafana.alerting.test.ts) read the same way: the committed
 * files, by their path from the repository root, and the datasources the committed provisioning file gives Grafana.
 * Starts no process (the dashboards test is in the unit lane).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { DATASOURCES_PATH } from '../../scripts/generators/dashboards/render.ts';

/** The repository root. */
export const ROOT = resolve(import.meta.dirname, '..', '..');

/** A committed file's text; `path` is relative to the repository root. */
export const read = (path: string): string => readFileSync(resolve(ROOT, path), 'utf8');

/** One datasource of the provisioning file, with the fields the tests look at. */
export interface ProvisionedDatasource {
  readonly uid: string;
  readonly type: string;
}

/** The datasources of the committed provisioning file (DATASOURCES_PATH), in the file's order. */
export function provisionedDatasources(): ProvisionedDatasource[] {
  return (parse(read(DATASOURCES_PATH)) as { datasources: ProvisionedDatasource[] }).datasources;
}
