import { FORWARD_LUA } from './redisForwardScripts.ts';

/*
 * The task scripts (key layout in redisKeys.ts). Each operation is one Lua script, which Redis runs atomically:
 * resolving a callback's task by either id, linking a solver id, merging an unregistered result into a task, the state
 * check and every write it implies (hash, links, per-state sets, counts) happen with no other command in between, so
 * with several receivers on one Redis each transition happens, and is reported to a caller, exactly once.
 */

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
export const REGISTER = `${STATE_KEYS}${LINK}
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
export const ATTACH = `${STATE_KEYS}${LINK}
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
export const RECORD_CALLBACK = `${STATE_KEYS}
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
export const RECONCILE = `
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
export const EXPIRE_DUE = `${FORWARD_LUA}
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
export const PURGE = `${FORWARD_LUA}
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
export const LIST = `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
`;

/** ARGV: task key prefix, solver key prefix, id → { app id, {field, value, …} } by app id, else by solver id; or {}. */
export const GET = `
local h = redis.call('HGETALL', ARGV[1] .. ARGV[3])
if #h > 0 then return {ARGV[3], h} end
local linked = redis.call('GET', ARGV[2] .. ARGV[3])
if not linked then return {} end
h = redis.call('HGETALL', ARGV[1] .. linked)
if #h == 0 then return {} end
return {linked, h}
`;
