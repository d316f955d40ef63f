import { readdirSync, readFileSync } from 'node:fs';
import { procCpuMicros } from './proc.ts';

/**
 * CPU time (user + system, µs) each live thread of a process has used so far, summed by thread name
 * (/proc/<pid>/task/<tid>/comm: Node names its threads, e.g. the event loop `node`, a worker `WorkerThread`,
 * libuv's pool `libuv-worker`, V8's helpers `V8 DefaultWorke`). A thread that exits between two readings takes its
 * time with it, so compare readings of threads that live through the interval.
 */
export function threadCpuMicros(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const used = procCpuMicros(Number(tid), `/proc/${pid}/task/${tid}/stat`);
      byName.set(name, (byName.get(name) ?? 0) + used);
    } catch {
      // the thread ended while being read
    }
  }
  return byName;
}
