/*
 * The forwarding outbox's Lua: the helpers every transition script embeds to write (or delete) a task's forwards in
 * its own atomic run, and the scripts of the outbox's worker and its operators (claim, settle, redeliver, replay).
 */

/**
 * The outbox's Lua helpers. Each script that may write or delete forwards sets FWD.prefix (P fwd:), FWD.events
 * (',delivered,late,' style, '' while forwarding is off) and FWD.wid (a random base for new webhook ids; a script
 * writing several forwards suffixes a counter) from its ARGV before calling them.
 */
export const FORWARD_LUA = `
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

/**
 * ARGV: forward prefix, task key prefix, now, limit, lease end, lease token base → { member, forward hash, task hash }…
 * The due head only (bounded by `limit`); each claim counts an attempt and moves the member to the lease's end.
 */
export const CLAIM = `
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
export const SETTLE = `
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
export const REDELIVER = `${RESTART_LUA}
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
export const REPLAY = `${RESTART_LUA}
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
export const FORWARDS_OF = `
local out = {}
for _, event in ipairs({'delivered', 'late', 'missed'}) do
  local h = redis.call('HGETALL', ARGV[1] .. event .. ':' .. ARGV[2])
  if #h > 0 then out[#out + 1] = {event, h} end
end
return out
`;
