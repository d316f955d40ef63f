import { loadSolversConfig, SolverConfigError } from './config.ts';
import { ResPhpClient } from './resPhpClient.ts';

const USAGE = [
  'Usage:',
  '  captcha-callback-monitor solver register-pingback <name> <url>   res.php add_pingback: register the address',
  '  captcha-callback-monitor solver list-pingbacks <name>            res.php get_pingbacks: the registered addresses',
  '  captcha-callback-monitor solver delete-pingback <name> <url|all> res.php del_pingback: remove one, or all',
  '  (also: list <name>, delete <name> <url|all>)',
  '',
  'The solver <name> is configured as for the server (SOLVER_<NAME>_PROTOCOL=res.php, _URL, _KEY or _KEY_FILE).',
  "2Captcha registers an address only when the request comes from that server's IP: run this on the receiver's host.",
  'Prints what the solver answered; exit code 0 when it accepted, 1 when it refused or could not be reached, 2 on usage.',
].join('\n');

/** `captcha-callback-monitor solver …`: the res.php pingback-address calls, answered as the solver answered. */
export async function solverCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  err: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<number> {
  const [sub, name, addr] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    (sub === undefined ? err : out)(USAGE);
    return sub === undefined ? 2 : 0;
  }
  const action =
    sub === 'register-pingback' || sub === 'add-pingback'
      ? 'add'
      : sub === 'list-pingbacks' || sub === 'list'
        ? 'list'
        : sub === 'delete-pingback' || sub === 'delete'
          ? 'delete'
          : undefined;
  if (action === undefined || name === undefined || (action !== 'list' && addr === undefined)) {
    err(
      `captcha-callback-monitor solver: ${action === undefined ? `unknown subcommand "${sub.slice(0, 40)}"` : 'missing argument'}\n\n${USAGE}`,
    );
    return 2;
  }
  if (addr !== undefined && addr !== 'all') {
    try {
      const u = new URL(addr);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
    } catch {
      err(`captcha-callback-monitor solver: <url> must be an http(s) URL such as https://receiver.example.com/`);
      return 2;
    }
  }
  let solvers: ReturnType<typeof loadSolversConfig>['solvers'];
  try {
    solvers = loadSolversConfig(env).solvers;
  } catch (error) {
    if (error instanceof SolverConfigError) {
      err(`captcha-callback-monitor: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const config = solvers.find((s) => s.name === name.toLowerCase());
  if (!config) {
    const known = solvers.map((s) => s.name).join(', ') || 'none configured';
    err(`captcha-callback-monitor solver: no solver named "${name.slice(0, 40)}" (configured: ${known})`);
    return 2;
  }
  if (config.protocol !== 'res.php') {
    err(
      `captcha-callback-monitor solver: ${config.name} uses the createTask protocol, which has no pingback-address ` +
        'registration (its callbackUrl goes with each createTask)',
    );
    return 2;
  }
  const client = new ResPhpClient(config);
  const answer =
    action === 'add'
      ? await client.addPingback(addr as string)
      : action === 'list'
        ? await client.getPingbacks()
        : await client.delPingback(addr as string);
  // The solver's own answer (never the request URL, which carries the key).
  if (answer.kind === 'ok') {
    out(`${config.name} answered: ${JSON.stringify(answer.answer)}`);
    return 0;
  }
  err(`${config.name} refused or failed: ${answer.outcome}: ${answer.detail}`);
  return 1;
}
