/** Children tell the orchestrator they are ready with one JSON line on stdout: `{"ready":true,…}`. */
export function announce(info: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, ...info })}\n`);
}

/** Exit cleanly on SIGTERM/SIGINT so `--cpu-prof` profiles get written. */
export function exitOnSignal(cleanup: () => Promise<void> | void = () => {}): void {
  const stop = () => {
    Promise.resolve()
      .then(cleanup)
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
