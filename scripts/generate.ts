/**
 * `npm run generate`: writes every generated file (see scripts/generators/outputs.ts) from its source of truth.
 * `--check` writes nothing and exits 1 when a committed file is out of date (what the test does, for CI logs).
 *
 * `--config my.json` (JSON or YAML, see src/alerting/monitoringConfig.ts) `--out dir`: the monitoring files for
 * another stack (Prometheus rules, the PrometheusRule manifest, dashboards, Grafana-managed rules) written under
 * `dir` in the repository's layout; the repository's own files are not touched. `--out` alone: the defaults.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { monitoringConfig } from '../src/alerting/monitoringConfig.ts';
import { GENERATED_OUTPUTS, type GeneratedOutput, monitoringOutputs } from './generators/outputs.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const USAGE = 'usage: npm run generate -- [--check] [--config <monitoring config .json|.yaml> --out <dir>]';

function fail(message: string, code = 2): never {
  console.error(message);
  process.exit(code);
}

let args: { check?: boolean; config?: string; out?: string; help?: boolean };
try {
  args = parseArgs({
    options: {
      check: { type: 'boolean' },
      config: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (error) {
  fail(`${(error as Error).message}\n${USAGE}`);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
// A non-default config must not overwrite the repository's files, whose defaults the tests hold them to.
if (args.config !== undefined && args.out === undefined) fail(`--config needs --out <dir>\n${USAGE}`);

let outputs: readonly GeneratedOutput[] = GENERATED_OUTPUTS;
const root = args.out === undefined ? ROOT : resolve(args.out);
if (args.out !== undefined) {
  let input: unknown = {};
  if (args.config !== undefined) {
    const text = await readFile(args.config, 'utf8').catch((error: Error) =>
      fail(`cannot read ${args.config}: ${error.message}`),
    );
    try {
      input = /\.ya?ml$/i.test(args.config) ? parseYaml(text) : JSON.parse(text);
    } catch (error) {
      fail(`${args.config}: not valid ${/\.ya?ml$/i.test(args.config) ? 'YAML' : 'JSON'}: ${(error as Error).message}`);
    }
  }
  try {
    const config = monitoringConfig(input ?? {});
    // Render once here, so a config the alert table refuses (an unknown alert in `for`) fails before any write.
    outputs = monitoringOutputs(config);
    for (const output of outputs) await output.render();
  } catch (error) {
    fail(`${args.config ?? 'default config'}: ${(error as Error).message}`);
  }
}

let stale = 0;
for (const output of outputs) {
  const file = resolve(root, output.path);
  const text = await output.render();
  const current = await readFile(file, 'utf8').catch(() => undefined);
  if (current === text) {
    console.log(`up to date  ${output.path}`);
    continue;
  }
  if (args.check) {
    stale++;
    console.log(`OUT OF DATE ${output.path}`);
    continue;
  }
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, text);
  console.log(`wrote       ${args.out === undefined ? output.path : file}`);
}
if (stale > 0) fail(`${stale} generated file(s) out of date: run npm run generate`, 1);
