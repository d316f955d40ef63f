import type { ChildProcess } from 'node:child_process';

/** Where a receiver child said it listens, read from one stdout line. */
export interface AnnouncedPorts {
  readonly port: number;
  readonly managementPort: number | undefined;
  /** The whole announcement, as parsed. */
  readonly info: Record<string, unknown>;
}

/**
 * The ports in a child's announcement line: the CLI's `"msg":"listening"` log line (`public.port`, `management.port`)
 * or a bench server's `{"ready":true,"port":…}` line; undefined for any other line. Tests and the bench both start
 * receivers this way, so the line's shape is read in this one place.
 */
export function announcedPorts(line: string): AnnouncedPorts | undefined {
  if (!line.startsWith('{')) return undefined;
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (parsed.ready === true) {
    return { port: parsed.port as number, managementPort: parsed.managementPort as number | undefined, info: parsed };
  }
  if (parsed.msg === 'listening') {
    const port = (parsed.public as { port: number }).port;
    return { port, managementPort: (parsed.management as { port: number }).port, info: parsed };
  }
  return undefined;
}

/** SIGTERM (a stopped child is continued first), SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild(child: ChildProcess, exited: Promise<unknown>, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(force);
}
