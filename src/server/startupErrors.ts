import type { Config } from './config.ts';

/**
 * One line naming the variable, the address and the reason a listener could not bind (`EADDRINUSE` and friends),
 * instead of a JSON fatal line: `public` says which listener failed (the public one binds first).
 */
export function listenErrorMessage(error: unknown, config: Config, which: 'public' | 'management'): string {
  const err = error as NodeJS.ErrnoException;
  const [portVar, hostVar] = which === 'public' ? ['PORT', 'HOST'] : ['MANAGEMENT_PORT', 'MANAGEMENT_HOST'];
  const port = which === 'public' ? config.PORT : config.MANAGEMENT_PORT;
  const host = which === 'public' ? config.HOST : config.MANAGEMENT_HOST;
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return `${portVar}=${port}: address ${address} is already in use (another process listens there); choose another ${portVar} or stop that process`;
    case 'EACCES':
      return `${portVar}=${port}: permission denied binding ${address} (ports below 1024 need privileges; running as uid ${process.getuid?.() ?? '?'})`;
    case 'EADDRNOTAVAIL':
      return `${hostVar}=${host}: not an address of this machine (cannot bind ${address})`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${hostVar}=${host}: unknown host name (cannot bind ${address})`;
    default:
      return `${which} listener (${hostVar}=${host}, ${portVar}=${port}): ${err.code ?? err.name}: ${err.message}`.replace(
        /\s*\n\s*/g,
        '; ',
      );
  }
}
