import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { CallbackFormat, Outcome } from '../../metrics/contract.ts';
import {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  type ForwardEvent,
  type ForwardJob,
  type ForwardOutbox,
  type ForwardRecord,
  type ForwardState,
  type NewTask,
  type RegisterResult,
  type ResultDetails,
  StoreUnavailableError,
  TASK_STATES,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';

export interface RedisTaskStoreOptions {
  /** Prepended to every key, so several deployments can share one Redis database. Default `ccm:`. */
  readonly keyPrefix?: string;
  /** A command without a reply after this many ms rejects (a hung Redis must still give a prompt 503). Default 1000. */
  readonly commandTimeoutMs?: number;
  /** How long one connection attempt may take, and how long `open` waits for the first one. Default 2000. */
  readonly connectTimeoutMs?: number;
  /** Connection errors (ioredis reports them as events while it reconnects); for logging. */
  readonly onConnectionError?: (error: Error) => void;
  /**
   * How many callbacks whose `recordCallback` rejected are remembered until `reconcile` settles them. Beyond it the
   * oldest is forgotten (counted in `unconfirmedDropped` and reported through `onWarning`): if Redis had applied it,
   * no instance counts it. Default 10,000.
   */
  readonly unconfirmedLimit?: number;
  /** Conditions worth a log line that are not errors of a call (an unconfirmed callback forgotten). */
  readonly onWarning?: (message: string) => void;
}

/** Ids registered per script call: large batches are split so one script never blocks Redis for long. */
const REGISTER_CHUNK = 1000;
/** Unconfirmed callbacks asked about per (read-only) script call in `reconcile`. */
const RECONCILE_CHUNK = 1000;

/*
 * Key layout (P = key prefix):
 *   P task:<id>        hash: state, registered (1/0), outcome, code, format, submittedAt, deadlineAt, receivedAt,
 *                      callbacks, solverTaskId, solution and metadata (JSON text; absent when null), recovered
 *                      ('1' when the stored result came from recovery polling; absent otherwise); firstToken
                      and firstKind (delivered | late | unregistered): the token of the recordCallback call that
                      settled the task and what it did; lastDupToken: the token of its latest duplicate. They are
                      written by the same script as the transition and deleted with the hash, for `reconcile`
 *   P solver:<sid>     string: the app id of the task (or unregistered record) the solver task id is linked to; set
 *                      and deleted together with the hash's solverTaskId field, so the two always agree
 *   P state:<state>    sorted set of ids per state: pending scored by deadline (it doubles as the deadline queue
 *                      that expiry pops from), settled states by settling time (the callback's receipt, or the
 *                      deadline when missed)
 *   P settled          sorted set of every settled id (delivered, missed, late, unregistered), scored by its
 *                      settling time: the callback's receipt, or the deadline when missed. The retention queue.
 *   P counts           hash: pending, delivered, missed, late (registered tasks only)
 *   P fwd:<event>:<id> hash: one forward (outbox row): webhookId, state, createdAt, since, attempts, nextAttemptAt,
 *                      lease, lastAttemptAt, lastStatus, lastError, doneAt; written by the script of the transition
 *                      that makes it (only while forwarding is enabled), deleted with its task
 *   P fwd:due          sorted set of pending forwards (`<event>:<id>`) by next attempt time; a claim moves a member
 *                      to its lease's end, so a lease that runs out makes it due again
 *   P fwd:created:<s>  sorted sets of forwards per forward state by event time: the oldest pending one, replay
 * *   P ping             written by ping()
 * Each operation is one Lua script, which Redis runs atomically: resolving a callback's task by either id, linking
 * a solver id, merging an unregistered result into a task, the state check and every write it implies (hash, links,
 * per-state sets, counts) happen with no other command in between, so with several receivers on one Redis each
 * transition happens, and is reported to a caller, exactly once.
 *
 * Scripts that discover ids inside Redis (a task by its solver id, register, expire, list, purge) build keys from the
 * prefix, so this store needs one Redis (primary), not Redis Cluster.
 */

/**
 * The outbox's Lua helpers. Each script that may write or delete forwards sets FWD.prefix (P fwd:), FWD.events
 * (',delivered,late,' style, '' while forwarding is off) and FWD.wid (a random base for new webhook ids; a script
 * writing several forwards suffixes a counter) from its ARGV before calling them.
 */
const FORWARD_LUA = `
local FWD = { prefix = '', events = '', wid = '', n = 0 }
local function add_forward(id, event, at)
  if FWD.events == '' or not string.find(FWD.events, ',' .. event .. ',', 1, true) then return end
  local m = event .. ':' .. id
  local key = FWD.prefix .. m
  if redis.call('EXISTS', key) == 1 then return end
  FWD.n = FWD.n + 1
  redis.call('HSET', key, 'webhookId', FWD.wid .. '_' .. FWD.n, 'state', 'pending', 'createdAt', at, 'since', at,
    'attempts', '0', 'nextAttemptAt', at)
  redis.call('ZADD', FWD.prefix .. 'due', at, m)
  redis.call('ZADD', FWD.prefix .. 'created:pending', at, m)
end
local function delete_forwards(id)
  for _, event in ipairs({'delivered', 'late', 'missed'}) do
    local m = event .. ':' .. id
    local st = redis.call('HGET', FWD.prefix .. m, 'state')
    if st then
      redis.call('DEL', FWD.prefix .. m)
      redis.call('ZREM', FWD.prefix .. 'due', m)
      redis.call('ZREM', FWD.prefix .. 'created:' .. st, m)
    end
  end
end
`;

/** Every script that changes states receives these keys first, in this order. */
const STATE_KEYS = `${FORWARD_LUA}
local K = { counts = KEYS[1], pending = KEYS[2], delivered = KEYS[3], missed = KEYS[4], late = KEYS[5],
  settled = KEYS[6] }
`;

/**
 * Links solver id `sid` to registered task `id` (see AttachResult), merging the unregistered record that holds it:
 * that record is deleted and its result applied to the task (its callbacks added up). Returns
 * {'attached'|'unchanged'|'unknown'|'conflict'} or {'merged', kind, submittedAt, outcome, code, format, receivedAt,
 * solution, metadata, recovered} (false for a missing field).
 */
const LINK = `
local function link(tp, sp, id, sid)
  local key = tp .. id
  local t = redis.call('HMGET', key, 'state', 'registered', 'solverTaskId', 'submittedAt')
  if not t[1] or t[2] ~= '1' then return {'unknown'} end
  if t[3] == sid then return {'unchanged'} end
  if t[3] then return {'conflict'} end
  local holder = redis.call('GET', sp .. sid)
  local h
  if holder then
    h = redis.call('HMGET', tp .. holder, 'state', 'registered', 'outcome', 'code', 'format', 'receivedAt',
      'callbacks', 'solution', 'metadata', 'recovered')
    if not h[1] then holder = nil elseif h[2] == '1' then return {'conflict'} end
  end
  redis.call('HSET', key, 'solverTaskId', sid)
  redis.call('SET', sp .. sid, id)
  if not holder then return {'attached'} end
  -- The callback came before the app told us the solver's id: it becomes this task's callback.
  redis.call('DEL', tp .. holder)
  delete_forwards(holder)
  redis.call('ZREM', K.delivered, holder)
  redis.call('ZREM', K.settled, holder)
  local received = h[6]
  redis.call('HINCRBY', key, 'callbacks', tonumber(h[7]))
  local state = t[1]
  local kind = 'duplicate'
  if state == 'pending' or state == 'missed' then
    redis.call('HSET', key, 'outcome', h[3], 'code', h[4], 'format', h[5], 'receivedAt', received)
    if h[8] then redis.call('HSET', key, 'solution', h[8]) end
    if h[9] then redis.call('HSET', key, 'metadata', h[9]) end
    if h[10] then redis.call('HSET', key, 'recovered', h[10]) end
    redis.call('ZADD', K.settled, received, id)
    if state == 'pending' then
      kind = 'delivered'
      redis.call('HSET', key, 'state', 'delivered')
      redis.call('ZREM', K.pending, id)
      redis.call('ZADD', K.delivered, received, id)
      redis.call('HINCRBY', K.counts, 'pending', -1)
      redis.call('HINCRBY', K.counts, 'delivered', 1)
    else
      kind = 'late'
      redis.call('HSET', key, 'state', 'late')
      redis.call('ZREM', K.missed, id)
      redis.call('ZADD', K.late, received, id)
      redis.call('HINCRBY', K.counts, 'missed', -1)
      redis.call('HINCRBY', K.counts, 'late', 1)
    end
    add_forward(id, kind, received)
  end
  return {'merged', kind, t[4] or received, h[3], h[4], h[5], received, h[8], h[9], h[10]}
end
`;

/**
 * KEYS: the state keys. ARGV: task key prefix, solver key prefix, submittedAt, deadlineAt, forward prefix, forward
 * events, webhook id base, then per task: id, solver id ('' for none), deadline ('' for the call's) → { added ids,
 * merges: { id, link reply }… }.
 */
const REGISTER = `${STATE_KEYS}${LINK}
FWD.prefix, FWD.events, FWD.wid = ARGV[5], ARGV[6], ARGV[7]
local added, merges = {}, {}
for i = 8, #ARGV, 3 do
  local id, sid, deadline = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if deadline == '' then deadline = ARGV[4] end
  local key = ARGV[1] .. id
  if redis.call('HSETNX', key, 'state', 'pending') == 1 then
    redis.call('HSET', key, 'registered', '1', 'submittedAt', ARGV[3], 'deadlineAt', deadline, 'callbacks', '0')
    redis.call('ZADD', K.pending, deadline, id)
    added[#added + 1] = id
    if sid ~= '' then
      local linked = link(ARGV[1], ARGV[2], id, sid)
      if linked[1] == 'merged' then merges[#merges + 1] = id; merges[#merges + 1] = linked end
    end
  end
end
-- One counts update for the new tasks; a merge above already moved its task on (the script is atomic either way).
if #added > 0 then redis.call('HINCRBY', K.counts, 'pending', #added) end
return {added, merges}
`;

/**
 * KEYS: the state keys. ARGV: task key prefix, solver key prefix, id, solver id, forward prefix, forward events,
 * webhook id base → the link reply.
 */
const ATTACH = `${STATE_KEYS}${LINK}
FWD.prefix, FWD.events, FWD.wid = ARGV[5], ARGV[6], ARGV[7]
return link(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
`;

/**
 * KEYS: the state keys. ARGV: task key prefix, solver key prefix, app id, solver id (each '' for none), outcome,
 * code, format, receivedAt, solution, metadata ('' for none), token ('' for none), forward prefix, forward events,
 * webhook id base, recovered ('1' for a result recovery polling fetched, '' for a callback) → { kind, id,
 * submittedAt? }. `recovered` is written only by the call that settles the task, with its result.
 *
 * The task is the one with the app id; else the one the solver id is linked to; else, with no app id, the one whose
 * app id is the solver id. With a token, the call that settles the task (delivered, late, unregistered) also writes
 * it to the task's hash as `firstToken`, with `firstKind`; a duplicate writes it as `lastDupToken`. So a caller whose
 * reply was lost can learn later, from the task itself, whether (and how) its call was applied.
 */
const RECORD_CALLBACK = `${STATE_KEYS}
local tp, sp = ARGV[1], ARGV[2]
local app, sid = ARGV[3], ARGV[4]
local received = ARGV[8]
local token = ARGV[11]
local recovered = ARGV[15]
FWD.prefix, FWD.events, FWD.wid = ARGV[12], ARGV[13], ARGV[14]
local id, state
local byApp = false
if app ~= '' then
  state = redis.call('HGET', tp .. app, 'state')
  if state then id = app; byApp = true end
end
if not id and sid ~= '' then
  local linked = redis.call('GET', sp .. sid)
  if linked then
    state = redis.call('HGET', tp .. linked, 'state')
    if state then id = linked end
  end
  if not id and app == '' then
    state = redis.call('HGET', tp .. sid, 'state')
    if state then id = sid end
  end
end
local reply
if not id then
  -- Nothing holds the solver id (the lookups above would have found it): it is linked to the stored result.
  if app ~= '' then id = app else id = sid end
  local key = tp .. id
  redis.call('HSET', key, 'state', 'delivered', 'registered', '0', 'outcome', ARGV[5], 'code', ARGV[6],
    'format', ARGV[7], 'receivedAt', received, 'callbacks', '1')
  if ARGV[9] ~= '' then redis.call('HSET', key, 'solution', ARGV[9]) end
  if ARGV[10] ~= '' then redis.call('HSET', key, 'metadata', ARGV[10]) end
  if recovered ~= '' then redis.call('HSET', key, 'recovered', recovered) end
  if sid ~= '' then
    redis.call('HSET', key, 'solverTaskId', sid)
    redis.call('SET', sp .. sid, id)
  end
  redis.call('ZADD', K.delivered, received, id)
  redis.call('ZADD', K.settled, received, id)
  reply = {'unregistered', id}
  add_forward(id, 'delivered', received)
  if token ~= '' then redis.call('HSET', key, 'firstToken', token, 'firstKind', 'unregistered') end
else
  local key = tp .. id
  -- Found by the app's id with no solver id yet: the callback's is linked, unless another task holds it.
  if byApp and sid ~= '' and redis.call('HEXISTS', key, 'solverTaskId') == 0
    and redis.call('EXISTS', sp .. sid) == 0 then
    redis.call('HSET', key, 'solverTaskId', sid)
    redis.call('SET', sp .. sid, id)
  end
  redis.call('HINCRBY', key, 'callbacks', 1)
  if state ~= 'pending' and state ~= 'missed' then
    reply = {'duplicate', id}
    if token ~= '' then redis.call('HSET', key, 'lastDupToken', token) end
  else
    local submitted = redis.call('HGET', key, 'submittedAt') or received
    redis.call('HSET', key, 'outcome', ARGV[5], 'code', ARGV[6], 'format', ARGV[7], 'receivedAt', received)
    if ARGV[9] ~= '' then redis.call('HSET', key, 'solution', ARGV[9]) end
    if ARGV[10] ~= '' then redis.call('HSET', key, 'metadata', ARGV[10]) end
    if recovered ~= '' then redis.call('HSET', key, 'recovered', recovered) end
    redis.call('ZADD', K.settled, received, id)
    -- pending → delivered, or missed → late: the same moves between the two states' sets and counts.
    local from, to = 'pending', 'delivered'
    if state ~= 'pending' then from, to = 'missed', 'late' end
    redis.call('HSET', key, 'state', to)
    redis.call('ZREM', K[from], id)
    redis.call('ZADD', K[to], received, id)
    redis.call('HINCRBY', K.counts, from, -1)
    redis.call('HINCRBY', K.counts, to, 1)
    reply = {to, id, submitted}
    add_forward(id, to, received)
    if token ~= '' then redis.call('HSET', key, 'firstToken', token, 'firstKind', to) end
  end
end
return reply
`;

/**
 * Read-only. ARGV: task key prefix, solver key prefix, then per unconfirmed call: token, app id, solver id (each ''
 * for none) → one reply per call, in order: { kind, id, submittedAt? } as RECORD_CALLBACK returned it when that call
 * was applied, or {} when no task carries its token.
 *
 * The tasks asked are the ones RECORD_CALLBACK could have filed the callback under (by app id, by the solver id's
 * link, by the solver id as app id when there is no app id). Each is asked whether its own `firstToken` (or
 * `lastDupToken`) is this call's token; tokens are unique, so asking one task too many can never match wrongly, and
 * asking all of them still finds the task when the resolution has changed since (a task registered or linked later).
 */
const RECONCILE = `
local tp, sp = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 3 do
  local token, app, sid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ids = {}
  if app ~= '' then ids[#ids + 1] = app end
  if sid ~= '' then
    local linked = redis.call('GET', sp .. sid)
    if linked then ids[#ids + 1] = linked end
    if app == '' then ids[#ids + 1] = sid end
  end
  local reply = {}
  for _, id in ipairs(ids) do
    local t = redis.call('HMGET', tp .. id, 'firstToken', 'firstKind', 'submittedAt', 'receivedAt', 'lastDupToken')
    if t[1] == token then
      if t[2] == 'unregistered' then reply = {'unregistered', id} else reply = {t[2], id, t[3] or t[4]} end
      break
    elseif t[5] == token then
      reply = {'duplicate', id}
      break
    end
  end
  out[#out + 1] = reply
end
return out
`;

/**
 * KEYS: state:pending, state:missed, counts, settled. ARGV: task key prefix, now, limit, forward prefix, forward
 * events, webhook id base → moved ids, deadline order. Only the due head of the deadline set is read
 * (ZRANGEBYSCORE … LIMIT), so the cost is bounded by `limit`.
 */
const EXPIRE_DUE = `${FORWARD_LUA}
FWD.prefix, FWD.events, FWD.wid = ARGV[4], ARGV[5], ARGV[6]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local moved = {}
for i = 1, #due, 2 do
  local id = due[i]
  local key = ARGV[1] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', key, 'state') == 'pending' then
    redis.call('HSET', key, 'state', 'missed')
    redis.call('ZADD', KEYS[2], due[i + 1], id)
    redis.call('ZADD', KEYS[4], due[i + 1], id)
    add_forward(id, 'missed', due[i + 1])
    moved[#moved + 1] = id
  end
end
if #moved > 0 then
  redis.call('HINCRBY', KEYS[3], 'pending', -#moved)
  redis.call('HINCRBY', KEYS[3], 'missed', #moved)
end
return moved
`;

/**
 * KEYS: settled, state:delivered, state:missed, state:late. ARGV: task key prefix, olderThan (exclusive), limit,
 * solver key prefix, forward prefix → how many tasks were deleted. Reads only the oldest `limit` entries of the
 * settled set. A deleted task's solver id link and forwards go with it. Counts stay as they are.
 */
const PURGE = `${FORWARD_LUA}
FWD.prefix = ARGV[5]
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local sets = { delivered = KEYS[2], missed = KEYS[3], late = KEYS[4] }
local deleted = 0
for _, id in ipairs(old) do
  local key = ARGV[1] .. id
  local t = redis.call('HMGET', key, 'state', 'solverTaskId')
  redis.call('ZREM', KEYS[1], id)
  if t[1] and sets[t[1]] then
    if t[2] and redis.call('GET', ARGV[4] .. t[2]) == id then redis.call('DEL', ARGV[4] .. t[2]) end
    redis.call('DEL', key)
    delete_forwards(id)
    redis.call('ZREM', sets[t[1]], id)
    deleted = deleted + 1
  end
end
return deleted
`;

/** KEYS: state:<state>. ARGV: task key prefix, limit → { id, {field, value, …}, … }, one consistent snapshot. */
const LIST = `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
`;

/** ARGV: task key prefix, solver key prefix, id → { app id, {field, value, …} } by app id, else by solver id; or {}. */
const GET = `
local h = redis.call('HGETALL', ARGV[1] .. ARGV[3])
if #h > 0 then return {ARGV[3], h} end
local linked = redis.call('GET', ARGV[2] .. ARGV[3])
if not linked then return {} end
h = redis.call('HGETALL', ARGV[1] .. linked)
if #h == 0 then return {} end
return {linked, h}
`;

/**
 * ARGV: forward prefix, task key prefix, now, limit, lease end, lease token base → { member, forward hash, task hash }…
 * The due head only (bounded by `limit`); each claim counts an attempt and moves the member to the lease's end.
 */
const CLAIM = `
local fp, tp = ARGV[1], ARGV[2]
local due = redis.call('ZRANGEBYSCORE', fp .. 'due', '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i, m in ipairs(due) do
  local key = fp .. m
  if redis.call('HGET', key, 'state') == 'pending' then
    local lease = ARGV[6] .. '_' .. i
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'lease', lease, 'nextAttemptAt', ARGV[5])
    redis.call('ZADD', fp .. 'due', ARGV[5], m)
    local id = string.sub(m, string.find(m, ':', 1, true) + 1)
    out[#out + 1] = {m, redis.call('HGETALL', key), redis.call('HGETALL', tp .. id)}
  else
    redis.call('ZREM', fp .. 'due', m)
  end
end
return out
`;

/**
 * ARGV: forward prefix, then per item: member, lease, state, next attempt ('' unless pending), at, status (''), error
 * ('') → how many were settled (only under their current lease).
 */
const SETTLE = `
local fp = ARGV[1]
local settled = 0
for i = 2, #ARGV, 7 do
  local m, lease, state = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = fp .. m
  local f = redis.call('HMGET', key, 'state', 'lease', 'createdAt')
  if f[1] == 'pending' and f[2] == lease then
    redis.call('HDEL', key, 'lease', 'lastStatus', 'lastError')
    redis.call('HSET', key, 'lastAttemptAt', ARGV[i + 4])
    if ARGV[i + 5] ~= '' then redis.call('HSET', key, 'lastStatus', ARGV[i + 5]) end
    if ARGV[i + 6] ~= '' then redis.call('HSET', key, 'lastError', ARGV[i + 6]) end
    if state == 'pending' then
      redis.call('HSET', key, 'nextAttemptAt', ARGV[i + 3])
      redis.call('ZADD', fp .. 'due', ARGV[i + 3], m)
    else
      redis.call('HSET', key, 'state', state, 'doneAt', ARGV[i + 4])
      redis.call('HDEL', key, 'nextAttemptAt')
      redis.call('ZREM', fp .. 'due', m)
      redis.call('ZREM', fp .. 'created:pending', m)
      redis.call('ZADD', fp .. 'created:' .. state, f[3], m)
    end
    settled = settled + 1
  end
end
return settled
`;

/** A new round for member m (see ForwardOutbox.redeliver); false when an attempt holds a live lease. */
const RESTART_LUA = `
local function restart(fp, m, now)
  local key = fp .. m
  local f = redis.call('HMGET', key, 'state', 'lease', 'nextAttemptAt', 'createdAt')
  if not f[1] then return false end
  if f[1] == 'pending' and f[2] and tonumber(f[3]) > tonumber(now) then return false end
  redis.call('ZREM', fp .. 'created:' .. f[1], m)
  redis.call('HSET', key, 'state', 'pending', 'since', now, 'attempts', '0', 'nextAttemptAt', now)
  redis.call('HDEL', key, 'lease', 'doneAt')
  redis.call('ZADD', fp .. 'due', now, m)
  redis.call('ZADD', fp .. 'created:pending', f[4], m)
  return true
end
`;

/** ARGV: forward prefix, now, task id → how many of its forwards were restarted. */
const REDELIVER = `${RESTART_LUA}
local n = 0
for _, event in ipairs({'delivered', 'late', 'missed'}) do
  if restart(ARGV[1], event .. ':' .. ARGV[3], ARGV[2]) then n = n + 1 end
end
return n
`;

/**
 * ARGV: forward prefix, now, state (dead, gone, delivered or all), from, to (exclusive), limit → how many were
 * restarted: the oldest `limit` by event time of each picked state's set, merged, oldest first.
 */
const REPLAY = `${RESTART_LUA}
local fp, limit = ARGV[1], tonumber(ARGV[6])
local states = {ARGV[3]}
if ARGV[3] == 'all' then states = {'delivered', 'gone', 'dead'} end
local picked = {}
for _, st in ipairs(states) do
  local r = redis.call('ZRANGEBYSCORE', fp .. 'created:' .. st, ARGV[4], '(' .. ARGV[5], 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #r, 2 do picked[#picked + 1] = {tonumber(r[i + 1]), r[i]} end
end
table.sort(picked, function(a, b) return a[1] < b[1] end)
local n = 0
for i = 1, math.min(limit, #picked) do
  if restart(fp, picked[i][2], ARGV[2]) then n = n + 1 end
end
return n
`;

/** ARGV: forward prefix, task id → { event, forward hash }… (read-only). */
const FORWARDS_OF = `
local out = {}
for _, event in ipairs({'delivered', 'late', 'missed'}) do
  local h = redis.call('HGETALL', ARGV[1] .. event .. ':' .. ARGV[2])
  if #h > 0 then out[#out + 1] = {event, h} end
end
return out
`;

type LinkReply =
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

interface Scripts {
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

/** A callback whose `recordCallback` rejected: Redis may have applied it all the same. */
interface Unconfirmed {
  readonly token: string;
  readonly result: CallbackResult;
  /** Date.now() when the call rejected. */
  readonly failedAt: number;
}

/**
 * The shared store: several receiver instances on one Redis. ioredis is configured to fail fast rather than queue:
 * while Redis is unreachable every call rejects at once (no offline queue), a command in flight when the connection
 * drops rejects instead of being re-sent (a re-sent transition script could run twice), and a hung Redis is cut off
 * by the command timeout. ioredis keeps reconnecting in the background (at least once a second), so the store
 * recovers by itself when Redis returns.
 *
 * A rejected call is not proof that nothing happened: the script may have run with its reply lost (the connection
 * dropped after Redis read the command, or the reply came after the command timeout). So every recordCallback
 * passes a fresh token; the script that settles a task writes it into that task's own hash (`firstToken`, with the
 * transition's kind), and a duplicate writes it as the task's `lastDupToken`. Nothing else is kept in Redis: no key
 * per call, no TTL; the fields go when retention deletes the task. A rejected call's token is kept in memory
 * (bounded) until `reconcile` asks the task whether it carries that token. A lost duplicate's reply is recovered only
 * while no later duplicate of the same task has overwritten `lastDupToken`; otherwise the duplicates counter misses
 * it (nothing else does: a duplicate changes no state).
 *
 * Durability is Redis's: run it with `appendonly yes` (fsync every second, or `appendfsync always`) so that an
 * acknowledged result survives a Redis restart.
 */
export class RedisTaskStore implements TaskStore {
  readonly #redis: Redis & Scripts;
  readonly #prefix: string;
  readonly #taskPrefix: string;
  readonly #solverPrefix: string;
  readonly #stateKeys: string[];
  readonly #keys: { counts: string; ping: string; settled: string; state: Record<TaskState, string> };
  readonly #commandTimeoutMs: number;
  readonly #unconfirmedLimit: number;
  readonly #onWarning: ((message: string) => void) | undefined;
  /** Tokens are this instance's random prefix and a counter: unique across instances, cheap per call. */
  readonly #tokenPrefix = randomBytes(9).toString('base64url');
  #tokenCounter = 0;
  /** Oldest first. */
  #unconfirmed: Unconfirmed[] = [];
  #dropped = 0;
  /** reconcile() calls run one after another, so a token is never reported by two of them. */
  #reconciling: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #forwardPrefix: string;
  /** ',delivered,late,' style, '' while forwarding is off: passed to every script that may write a forward. */
  #forwardEvents = '';

  readonly forwards: ForwardOutbox = {
    enable: (events) => {
      this.#forwardEvents = events.length === 0 ? '' : `,${events.join(',')},`;
    },
    claimDue: async (now, limit, leaseMs) => {
      if (limit <= 0) {
        this.#assertOpen();
        return [];
      }
      const base = newBase();
      const rows = await this.#call('claimDue', () =>
        this.#redis.ccmClaim(
          this.#forwardPrefix,
          this.#taskPrefix,
          String(now),
          String(limit),
          String(now + leaseMs),
          base,
        ),
      );
      return rows.map(([member, fields, task], i): ForwardJob => {
        const f = toForward(member, pairs(fields));
        return { forward: f, lease: `${base}_${i + 1}`, task: toRecord(f.taskId, pairs(task)) };
      });
    },
    settle: async (items) => {
      this.#assertOpen();
      if (items.length === 0) return 0;
      const args = [this.#forwardPrefix];
      for (const item of items) {
        const r = item.result;
        args.push(
          `${item.event}:${item.taskId}`,
          item.lease,
          r.state,
          r.state === 'pending' ? String(r.nextAttemptAt) : '',
          String(item.at),
          r.status === null ? '' : String(r.status),
          r.error ?? '',
        );
      }
      return Number(await this.#call('settle', () => this.#redis.ccmSettle(...args)));
    },
    forwardsOf: async (taskId) => {
      const rows = await this.#call('forwardsOf', () => this.#redis.ccmForwardsOf(this.#forwardPrefix, taskId));
      return rows.map(([event, fields]) => toForward(`${event}:${taskId}`, pairs(fields)));
    },
    redeliver: async (taskId, now) =>
      Number(await this.#call('redeliver', () => this.#redis.ccmRedeliver(this.#forwardPrefix, String(now), taskId))),
    replay: async (filter, now) =>
      Number(
        await this.#call('replay', () =>
          this.#redis.ccmReplay(
            this.#forwardPrefix,
            String(now),
            filter.state,
            String(filter.from),
            String(filter.to),
            String(filter.limit),
          ),
        ),
      ),
    backlog: async (cap) => {
      const [pending, oldest] = await this.#call('backlog', () =>
        Promise.all([
          this.#redis.zcard(`${this.#forwardPrefix}due`),
          this.#redis.zrange(`${this.#forwardPrefix}created:pending`, '0', '0', 'WITHSCORES'),
        ]),
      );
      return { pending: Math.min(cap, pending), oldestCreatedAt: oldest.length >= 2 ? Number(oldest[1]) : null };
    },
  };

  /** The forward arguments every transition script takes: prefix, enabled events, a fresh webhook id base. */
  #forwardArgs(): [string, string, string] {
    return [this.#forwardPrefix, this.#forwardEvents, this.#forwardEvents === '' ? '' : `msg_${newBase()}`];
  }

  /** Creates the store without waiting for a connection; prefer `RedisTaskStore.open`. */
  constructor(url: string, options: RedisTaskStoreOptions = {}) {
    const p = options.keyPrefix ?? 'ccm:';
    this.#prefix = p;
    this.#taskPrefix = `${p}task:`;
    this.#solverPrefix = `${p}solver:`;
    this.#forwardPrefix = `${p}fwd:`;
    this.#keys = {
      counts: `${p}counts`,
      ping: `${p}ping`,
      settled: `${p}settled`,
      state: Object.fromEntries(TASK_STATES.map((s) => [s, `${p}state:${s}`])) as Record<TaskState, string>,
    };
    const k = this.#keys;
    this.#stateKeys = [k.counts, k.state.pending, k.state.delivered, k.state.missed, k.state.late, k.settled];
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 1000;
    this.#unconfirmedLimit = options.unconfirmedLimit ?? 10_000;
    this.#onWarning = options.onWarning;
    const redis = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.#commandTimeoutMs,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    });
    // Without a listener ioredis prints every reconnect failure; the failures themselves surface as rejections.
    redis.on('error', (error: Error) => options.onConnectionError?.(error));
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
    this.#redis = redis as Redis & Scripts;
  }

  /** Connects and waits until Redis answers; rejects (and stops reconnecting) when it does not within the timeout. */
  static async open(url: string, options: RedisTaskStoreOptions = {}): Promise<RedisTaskStore> {
    const store = new RedisTaskStore(url, options);
    try {
      await store.#redis.connect();
      // ioredis sends the URL's SELECT on connect but only reports its failure as an event and carries on in
      // database 0: a database out of range (e.g. /99 on a 16-database Redis) would silently write elsewhere.
      const db = store.#redis.options.db ?? 0;
      if (db !== 0) await store.#redis.select(db);
      await store.ping();
      return store;
    } catch (error) {
      await store.close();
      throw new StoreUnavailableError(`cannot reach Redis: ${(error as Error).message}`, { cause: error });
    }
  }

  /** The key prefix in use. */
  get keyPrefix(): string {
    return this.#prefix;
  }

  /** Callbacks whose call rejected and whose fate `reconcile` has not settled yet. */
  get unconfirmedCount(): number {
    return this.#unconfirmed.length;
  }

  /** Unconfirmed callbacks forgotten because the list was full (see `unconfirmedLimit`). */
  get unconfirmedDropped(): number {
    return this.#dropped;
  }

  async register(
    tasks: readonly (string | NewTask)[],
    submittedAt: number,
    deadlineAt: number,
  ): Promise<RegisterResult> {
    const added: string[] = [];
    const merged: RegisterResult['merged'][number][] = [];
    for (let i = 0; i < tasks.length; i += REGISTER_CHUNK) {
      const args = [
        ...this.#stateKeys,
        this.#taskPrefix,
        this.#solverPrefix,
        String(submittedAt),
        String(deadlineAt),
        ...this.#forwardArgs(),
      ];
      for (const item of tasks.slice(i, i + REGISTER_CHUNK)) {
        const task: NewTask = typeof item === 'string' ? { id: item } : item;
        args.push(task.id, task.solverTaskId ?? '', task.deadlineAt === undefined ? '' : String(task.deadlineAt));
      }
      const [chunkAdded, merges] = await this.#call('register', () => this.#redis.ccmRegister(...args));
      added.push(...chunkAdded);
      for (let j = 0; j + 1 < merges.length; j += 2) {
        const id = merges[j] as string;
        const reply = merges[j + 1] as LinkReply;
        const task = tasks.find((t) => typeof t !== 'string' && t.id === id) as NewTask;
        const linked = toAttachResult(id, task.solverTaskId!, reply);
        if (linked.kind === 'merged') merged.push({ transition: linked.transition, result: linked.result });
      }
    }
    return { added, merged };
  }

  async attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    const reply = await this.#call('attachSolverTaskId', () =>
      this.#redis.ccmAttach(
        ...this.#stateKeys,
        this.#taskPrefix,
        this.#solverPrefix,
        id,
        solverTaskId,
        ...this.#forwardArgs(),
      ),
    );
    return toAttachResult(id, solverTaskId, reply);
  }

  async recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    this.#assertOpen();
    if (r.taskId === undefined && r.solverTaskId === undefined) {
      throw new StoreUnavailableError('Redis store: a callback needs a task id or a solver id');
    }
    const token = `${this.#tokenPrefix}${(this.#tokenCounter++).toString(36)}`;
    let reply: [string, string, string?];
    try {
      reply = await this.#redis.ccmRecordCallback(
        ...this.#stateKeys,
        this.#taskPrefix,
        this.#solverPrefix,
        r.taskId ?? '',
        r.solverTaskId ?? '',
        r.outcome,
        r.code,
        r.format,
        String(r.receivedAt),
        r.solution == null ? '' : JSON.stringify(r.solution),
        r.metadata == null ? '' : JSON.stringify(r.metadata),
        token,
        ...this.#forwardArgs(),
        r.recovered === true ? '1' : '',
      );
    } catch (error) {
      // The script may have run although the reply never came: reconcile() finds out.
      this.#remember({ token, result: r, failedAt: Date.now() });
      throw new StoreUnavailableError(`Redis store: recordCallback failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return toTransition(reply);
  }

  #remember(entry: Unconfirmed): void {
    this.#unconfirmed.push(entry);
    const excess = this.#unconfirmed.length - this.#unconfirmedLimit;
    if (excess <= 0) return;
    this.#unconfirmed.splice(0, excess);
    this.#dropped += excess;
    this.#onWarning?.(
      `Redis store: ${excess} unconfirmed callback(s) forgotten (limit ${this.#unconfirmedLimit}); if Redis applied ` +
        `them, no instance counts them (${this.#dropped} so far)`,
    );
  }

  /**
   * Asks Redis which rejected callbacks it applied after all, and reports each of those exactly once: per unconfirmed
   * call, the task it would have been filed under is asked (in one read-only script per batch) whether its
   * `firstToken` (or `lastDupToken`) is that call's token. A token no task carries is forgotten only once it cannot
   * appear any more: its script may still be queued in Redis (a hung server runs what it had read when it resumes),
   * so only when Redis has answered for it more than twice the command timeout after its call rejected. Until then it
   * is asked for again on the next call. (A callback applied as unregistered whose record was merged into a task
   * since, or a task deleted by retention since, no longer carries the token: nothing is reported for it, which
   * changes no counter in the first case.)
   */
  reconcile(): Promise<ReadonlyArray<{ readonly transition: CallbackTransition; readonly result: CallbackResult }>> {
    const run = this.#reconciling.then(
      () => this.#reconcileOnce(),
      () => this.#reconcileOnce(),
    );
    this.#reconciling = run.catch(() => undefined);
    return run;
  }

  async #reconcileOnce(): Promise<Array<{ transition: CallbackTransition; result: CallbackResult }>> {
    this.#assertOpen();
    const asked = this.#unconfirmed.slice();
    if (asked.length === 0) return [];
    // Read before the question goes out: a token missing from an answer to a question sent after this moment.
    const askedAt = Date.now();
    const answers: Array<[string, string, string?] | []> = [];
    for (let i = 0; i < asked.length; i += RECONCILE_CHUNK) {
      const args = [this.#taskPrefix, this.#solverPrefix];
      for (const u of asked.slice(i, i + RECONCILE_CHUNK)) {
        args.push(u.token, u.result.taskId ?? '', u.result.solverTaskId ?? '');
      }
      answers.push(...(await this.#call('reconcile', () => this.#redis.ccmReconcile(...args))));
    }
    const grace = 2 * this.#commandTimeoutMs;
    const settled = new Set<Unconfirmed>();
    const applied: Array<{ transition: CallbackTransition; result: CallbackResult }> = [];
    for (const [i, entry] of asked.entries()) {
      const answer = answers[i];
      if (answer !== undefined && answer.length > 0) {
        applied.push({ transition: toTransition(answer as [string, string, string?]), result: entry.result });
        settled.add(entry);
      } else if (askedAt - entry.failedAt > grace) {
        settled.add(entry);
      }
    }
    // Entries added while the question was out are not in `asked` and stay.
    if (settled.size > 0) this.#unconfirmed = this.#unconfirmed.filter((u) => !settled.has(u));
    return applied;
  }

  async expireDue(now: number, limit: number): Promise<string[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const k = this.#keys;
    return this.#call('expireDue', () =>
      this.#redis.ccmExpireDue(
        k.state.pending,
        k.state.missed,
        k.counts,
        k.settled,
        this.#taskPrefix,
        String(now),
        String(limit),
        ...this.#forwardArgs(),
      ),
    );
  }

  async purge(olderThan: number, limit: number): Promise<number> {
    if (limit <= 0) {
      this.#assertOpen();
      return 0;
    }
    const k = this.#keys;
    const deleted = await this.#call('purge', () =>
      this.#redis.ccmPurge(
        k.settled,
        k.state.delivered,
        k.state.missed,
        k.state.late,
        this.#taskPrefix,
        String(olderThan),
        String(limit),
        this.#solverPrefix,
        this.#forwardPrefix,
      ),
    );
    return Number(deleted);
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const reply = await this.#call('get', () => this.#redis.ccmGet(this.#taskPrefix, this.#solverPrefix, id));
    if (reply.length === 0) return undefined;
    return toRecord(reply[0], pairs(reply[1]));
  }

  async list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const flat = await this.#call('list', () =>
      this.#redis.ccmList(this.#keys.state[state], this.#taskPrefix, String(limit)),
    );
    const out: TaskRecord[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const record = toRecord(flat[i] as string, pairs(flat[i + 1] as string[]));
      if (record) out.push(record);
    }
    return out;
  }

  async counts(): Promise<TaskCounts> {
    const [pending, delivered, missed, late] = await this.#call('counts', () =>
      this.#redis.hmget(this.#keys.counts, 'pending', 'delivered', 'missed', 'late'),
    );
    return {
      pending: Number(pending ?? 0),
      delivered: Number(delivered ?? 0),
      missed: Number(missed ?? 0),
      late: Number(late ?? 0),
    };
  }

  /**
   * A small write, not PING: a Redis that answers but refuses writes (maxmemory with noeviction, a failed RDB save
   * with stop-writes-on-bgsave-error, a read-only replica after failover) cannot store callbacks either.
   */
  async ping(): Promise<void> {
    await this.#call('ping', () => this.#redis.set(this.#keys.ping, String(Date.now()), 'PX', 60_000));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.#redis.status === 'ready') await this.#redis.quit();
    } catch {
      // Closing anyway.
    } finally {
      this.#redis.disconnect();
    }
  }

  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#assertOpen();
    try {
      return await fn();
    } catch (error) {
      throw new StoreUnavailableError(`Redis store: ${op} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError('Redis store is closed');
  }
}

function toTransition([kind, id, submittedAt]: [string, string, string?]): CallbackTransition {
  if (kind === 'delivered' || kind === 'late') return { kind, id, submittedAt: Number(submittedAt) };
  if (kind === 'unregistered' || kind === 'duplicate') return { kind, id };
  throw new StoreUnavailableError(`Redis store: unexpected reply to recordCallback: ${String(kind)}`);
}

function toAttachResult(id: string, solverTaskId: string, reply: LinkReply): AttachResult {
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

function pairs(fields: string[]): Record<string, string> {
  const hash: Record<string, string> = {};
  for (let j = 0; j + 1 < fields.length; j += 2) hash[fields[j]!] = fields[j + 1]!;
  return hash;
}

function toRecord(id: string, h: Record<string, string>): TaskRecord | undefined {
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

/** 16 random bytes, base64url: a base for webhook ids and lease tokens that no other call or instance shares. */
function newBase(): string {
  return randomBytes(16).toString('base64url');
}

function toForward(member: string, h: Record<string, string>): ForwardRecord {
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
