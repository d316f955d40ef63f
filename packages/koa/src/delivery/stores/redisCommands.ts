import type { Redis } from 'ioredis';
import type { CallbackFormat, Outcome } from '../../metrics/contract.ts';
import type {
  AttachResult,
  CallbackResult,
  CallbackTransition,
  ForwardEvent,
  ForwardRecord,
  ForwardState,
  ResultDetails,
  TaskRecord,
  TaskState,
} from '../TaskStore.ts';
import { StoreUnavailableError } from '../TaskStore.ts';
import { CLAIM, FORWARDS_OF, REDELIVER, REPLAY, SETTLE } from './redisForwardScripts.ts';
import { ATTACH, EXPIRE_DUE, GET, LIST, PURGE, RECONCILE, RECORD_CALLBACK, REGISTER } from './redisTaskScripts.ts';

/*
 * The scripts as ioredis commands: what each takes and replies (every argument a string, as Redis receives it), and
 * the decoding of those replies into the store's records.
 */

export type LinkReply =
  | [kind: 'attached' | 'unchanged' | 'unknown' | 'conflict']
  | [
      kind: 'merged',
      transition: 'delivered' | 'late' | 'duplicate',
      submittedAt: string,
      outcome: string,
      code: string,
      format: string,
      receivedAt: string,
      solution: string | null,
      metadata: string | null,
      recovered: string | null,
    ];

export interface Scripts {
  ccmRegister(...args: string[]): Promise<[added: string[], merges: Array<string | LinkReply>]>;
  ccmAttach(...args: string[]): Promise<LinkReply>;
  ccmRecordCallback(...args: string[]): Promise<[string, string, string?]>;
  ccmExpireDue(...args: string[]): Promise<string[]>;
  ccmList(...args: string[]): Promise<Array<string | string[]>>;
  ccmGet(...args: string[]): Promise<[string, string[]] | []>;
  ccmPurge(...args: string[]): Promise<number>;
  ccmReconcile(...args: string[]): Promise<Array<[string, string, string?] | []>>;
  ccmClaim(...args: string[]): Promise<Array<[string, string[], string[]]>>;
  ccmSettle(...args: string[]): Promise<number>;
  ccmRedeliver(...args: string[]): Promise<number>;
  ccmReplay(...args: string[]): Promise<number>;
  ccmForwardsOf(...args: string[]): Promise<Array<[string, string[]]>>;
}

/** Registers every script on `redis` as a command of its own. */
export function defineScripts(redis: Redis): Redis & Scripts {
  redis.defineCommand('ccmRegister', { numberOfKeys: 6, lua: REGISTER });
  redis.defineCommand('ccmAttach', { numberOfKeys: 6, lua: ATTACH });
  redis.defineCommand('ccmRecordCallback', { numberOfKeys: 6, lua: RECORD_CALLBACK });
  redis.defineCommand('ccmExpireDue', { numberOfKeys: 4, lua: EXPIRE_DUE });
  redis.defineCommand('ccmPurge', { numberOfKeys: 4, lua: PURGE });
  redis.defineCommand('ccmList', { numberOfKeys: 1, lua: LIST, readOnly: true });
  redis.defineCommand('ccmGet', { numberOfKeys: 0, lua: GET, readOnly: true });
  redis.defineCommand('ccmReconcile', { numberOfKeys: 0, lua: RECONCILE, readOnly: true });
  redis.defineCommand('ccmClaim', { numberOfKeys: 0, lua: CLAIM });
  redis.defineCommand('ccmSettle', { numberOfKeys: 0, lua: SETTLE });
  redis.defineCommand('ccmRedeliver', { numberOfKeys: 0, lua: REDELIVER });
  redis.defineCommand('ccmReplay', { numberOfKeys: 0, lua: REPLAY });
  redis.defineCommand('ccmForwardsOf', { numberOfKeys: 0, lua: FORWARDS_OF, readOnly: true });
  return redis as Redis & Scripts;
}

export function toTransition([kind, id, submittedAt]: [string, string, string?]): CallbackTransition {
  if (kind === 'delivered' || kind === 'late') return { kind, id, submittedAt: Number(submittedAt) };
  if (kind === 'unregistered' || kind === 'duplicate') return { kind, id };
  throw new StoreUnavailableError(`Redis store: unexpected reply to recordCallback: ${String(kind)}`);
}

export function toAttachResult(id: string, solverTaskId: string, reply: LinkReply): AttachResult {
  if (reply[0] !== 'merged') return { kind: reply[0] };
  const [, kind, submittedAt, outcome, code, format, receivedAt, solution, metadata, recovered] = reply;
  const result: CallbackResult = {
    taskId: id,
    solverTaskId,
    outcome: outcome as Outcome,
    code,
    format: format as CallbackFormat,
    receivedAt: Number(receivedAt),
    solution: parseJson(solution ?? undefined),
    metadata: parseJson(metadata ?? undefined),
    recovered: recovered === '1',
  };
  const transition: CallbackTransition =
    kind === 'duplicate' ? { kind, id } : { kind, id, submittedAt: Number(submittedAt) };
  return { kind: 'merged', transition, result };
}

export function pairs(fields: string[]): Record<string, string> {
  const hash: Record<string, string> = {};
  for (let j = 0; j + 1 < fields.length; j += 2) hash[fields[j]!] = fields[j + 1]!;
  return hash;
}

export function toRecord(id: string, h: Record<string, string>): TaskRecord | undefined {
  const state = h.state as TaskState | undefined;
  if (state === undefined) return undefined;
  return {
    id,
    solverTaskId: h.solverTaskId ?? null,
    state,
    registered: h.registered === '1',
    outcome: (h.outcome as Outcome | undefined) ?? null,
    code: h.code ?? null,
    format: (h.format as CallbackFormat | undefined) ?? null,
    solution: parseJson(h.solution),
    metadata: parseJson(h.metadata),
    recovered: h.recovered === '1',
    submittedAt: num(h.submittedAt),
    deadlineAt: num(h.deadlineAt),
    receivedAt: num(h.receivedAt),
    callbacks: Number(h.callbacks ?? 0),
  };
}

function parseJson(text: string | undefined): ResultDetails | null {
  return text === undefined ? null : (JSON.parse(text) as ResultDetails);
}

function num(value: string | undefined): number | null {
  return value === undefined || value === '' ? null : Number(value);
}

export function toForward(member: string, h: Record<string, string>): ForwardRecord {
  const cut = member.indexOf(':');
  const state = h.state as ForwardState;
  return {
    taskId: member.slice(cut + 1),
    event: member.slice(0, cut) as ForwardEvent,
    webhookId: h.webhookId ?? '',
    state,
    createdAt: Number(h.createdAt),
    since: Number(h.since),
    attempts: Number(h.attempts ?? 0),
    nextAttemptAt: state === 'pending' ? num(h.nextAttemptAt) : null,
    leased: h.lease !== undefined,
    lastAttemptAt: num(h.lastAttemptAt),
    lastStatus: num(h.lastStatus),
    lastError: h.lastError ?? null,
    doneAt: num(h.doneAt),
  };
}
