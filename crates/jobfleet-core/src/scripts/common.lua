local PUBLISH = 'PUBLISH'
-- common.lua: helpers prepended to every jobfleet script (not a script itself).
--
-- PUBLISH             the publish command: on a Redis Cluster the first line
--                     reads 'SPUBLISH' (sharded pub/sub: every channel of a
--                     queue shard lives in the shard's slot, so a message
--                     stays on that shard's nodes).
-- here(key, prefix)   whether `key` (built on `prefix`, a key prefix of the
--                     queue shard's slot) can be used on this node now: on a
--                     Cluster, while its slot migrates, a key already moved
--                     to the importing node cannot (Redis refuses a script's
--                     access to it, and the refusal would end the script
--                     halfway). A script checks a job's key before its first
--                     write for that job and, when it is not here, leaves the
--                     job and its id untouched for a later call. Whether the
--                     slot migrates at all is asked once per script (a key
--                     no job can have: ids have no spaces); only then is each
--                     key checked. Always true outside a Cluster.
-- now_ms()            Redis' own clock in unix ms: the one clock for leases,
--                     heartbeats and schedules (hosts' clocks are never used).
-- since(now, t)       ms from t to now, never negative (Redis' clock may step
--                     back: NTP, a failover to a host whose clock is behind).
-- valid_id(id)        1 to 200 bytes of UTF-8 without whitespace: what every
--                     client can address (ids are text in every language).
-- publish_event(...)  publishes one event JSON line on a queue's events channel.
--                     `extra` is a raw JSON fragment (",\"result\":{...}") so a
--                     result the worker already serialized is not re-encoded.
-- trim_dead(...)      enforces the dead set's caps (age, then count).
-- bury(...)           moves a job to the dead set, then trims it.
-- batch_fire(...)     once every job of a sealed batch is final, marks it
--                     done and creates its callback job, exactly once.
-- batch_done(...)     counts a batch job's final state, then batch_fire.
-- end_cancelled(...)  ends a job cancelled, with its retention and event.
-- hand_back(...)      puts a job whose attempt reached no outcome (graceful
--                     hand-back, lost claim reply, rolled-back outcome, dead
--                     worker) back at the claim end of pending, the attempt
--                     uncounted; a job whose cancel was requested ends
--                     cancelled instead.

local CLUSTER = PUBLISH == 'SPUBLISH'

local migrating = {}
local function here(key, prefix)
  if not CLUSTER then return true end
  local m = migrating[prefix]
  if m == nil then
    m = type(redis.pcall('EXISTS', prefix .. ' no such job')) ~= 'number'
    migrating[prefix] = m
  end
  return not m or type(redis.pcall('EXISTS', key)) == 'number'
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function since(now, t)
  t = tonumber(t)
  if not t or t > now then return 0 end
  return now - t
end

local function valid_id(id)
  local n = #id
  if n == 0 or n > 200 or string.find(id, '%s') then return false end
  if not string.find(id, '[\128-\255]') then return true end
  local i = 1
  while i <= n do
    local c = string.byte(id, i)
    local len
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4
    else return false end
    for j = i + 1, i + len - 1 do
      local d = string.byte(id, j)
      if not d or d < 0x80 or d > 0xBF then return false end
    end
    local d = string.byte(id, i + 1)
    if (c == 0xE0 and d < 0xA0) or (c == 0xED and d > 0x9F)
      or (c == 0xF0 and d < 0x90) or (c == 0xF4 and d > 0x8F) then
      return false
    end
    i = i + len
  end
  return true
end

local function publish_event(channel, id, queue, task, state, attempt, worker, ms, extra)
  redis.call(PUBLISH, channel,
    '{"id":' .. cjson.encode(id) ..
    ',"queue":' .. cjson.encode(queue) ..
    ',"task":' .. cjson.encode(task or '') ..
    ',"state":"' .. state .. '"' ..
    ',"attempt":' .. (tonumber(attempt) or 0) ..
    ',"worker":' .. cjson.encode(worker or '') ..
    ',"ms":' .. ms .. (extra or '') .. '}')
end

-- Drops dead-set entries older than max_age_ms (up to `limit` of them),
-- then the oldest beyond max_count. A dropped entry's record is deleted only
-- while it is still dead: once it expired, its id may name a new job (an
-- idempotency key used again), which must not be touched.
local function trim_dead(dead, job_prefix, now, max_count, max_age_ms, limit)
  local function drop(ids)
    for _, old_id in ipairs(ids) do
      local key = job_prefix .. old_id
      if not here(key, job_prefix) then return end
      if redis.call('HGET', key, 'state') == 'dead' then redis.call('DEL', key) end
      redis.call('ZREM', dead, old_id)
    end
  end
  max_age_ms = tonumber(max_age_ms)
  if max_age_ms > 0 then
    drop(redis.call('ZRANGEBYSCORE', dead, '-inf', now - max_age_ms, 'LIMIT', 0, limit))
  end
  max_count = tonumber(max_count)
  if max_count > 0 then
    local excess = redis.call('ZCARD', dead) - max_count
    if excess > 0 then drop(redis.call('ZRANGE', dead, 0, math.min(excess, limit) - 1)) end
  end
end

-- dead: the queue's dead ZSET; job_key: the job's HASH; retention_s: how long
-- the dead record is kept; max_count/max_age_ms: the dead set's caps.
-- base: a queue shard's key prefix (`P:{Q}:`), as job keys start. A batch
-- is the HASH `<base>batch:<id>`: `total` once sealed, counts `completed`,
-- `dead`, `cancelled`, and its callback (`callback_task`, `_payload`,
-- `_max_attempts`, `_timeout_ms`). Its callback job `<id>:callback` gets the
-- batch's id and counts, the given payload as `data`.
local function batch_fire(base, bid, now)
  local key = base .. 'batch:' .. bid
  local b = redis.call('HMGET', key, 'total', 'completed', 'dead', 'cancelled', 'fired',
    'callback_task', 'callback_payload', 'callback_max_attempts', 'callback_timeout_ms')
  local total = tonumber(b[1])
  if not total or b[5] then return end
  local c, d, x = tonumber(b[2]) or 0, tonumber(b[3]) or 0, tonumber(b[4]) or 0
  if c + d + x < total then return end
  redis.call('HSET', key, 'fired', 1, 'finished_ms', now)
  redis.call('EXPIRE', key, 7 * 24 * 3600)
  if not b[6] then return end
  local id = bid .. ':callback'
  local job = base .. 'job:' .. id
  if redis.call('EXISTS', job) == 1 then return end
  local payload = '{"batch":' .. cjson.encode(bid) .. ',"total":' .. total .. ',"completed":' .. c ..
    ',"dead":' .. d .. ',"cancelled":' .. x .. ',"data":' .. (b[7] or 'null') .. '}'
  redis.call('HSET', job, 'task', b[6], 'payload', payload, 'state', 'pending',
    'max_attempts', b[8] or '3', 'timeout_ms', b[9] or '30000', 'created_ms', now, 'batch_of', bid)
  redis.call('HSET', key, 'callback_id', id)
  redis.call('LPUSH', base .. 'pending', id)
  redis.call('HINCRBY', base .. 'stats', 'submitted', 1)
  redis.call(PUBLISH, base .. 'notify', 1)
end

-- field: 'completed', 'dead' or 'cancelled'.
local function batch_done(base, bid, field, now)
  local key = base .. 'batch:' .. bid
  -- An expired batch is not brought back by a late count.
  if redis.call('EXISTS', key) == 0 then return end
  redis.call('HINCRBY', key, field, 1)
  batch_fire(base, bid, now)
end

local function bury(dead, stats, job_key, job_prefix, id, now, reason, retention_s, max_count, max_age_ms)
  local batch = redis.call('HGET', job_key, 'batch')
  if batch then batch_done(string.sub(job_prefix, 1, -5), batch, 'dead', now) end
  redis.call('ZADD', dead, now, id)
  redis.call('HSET', job_key, 'state', 'dead', 'error', reason, 'finished_ms', now)
  redis.call('HDEL', job_key, 'cancel')
  if tonumber(retention_s) > 0 then redis.call('EXPIRE', job_key, retention_s) end
  redis.call('HINCRBY', stats, 'dead', 1)
  trim_dead(dead, job_prefix, now, max_count, max_age_ms, 100)
end

-- Applies the completed/cancelled retention to a finished record (its own
-- `key_ttl_s` when that is longer).
local function keep_for(key, retention_s)
  local own = tonumber(redis.call('HGET', key, 'key_ttl_s'))
  if own and own > tonumber(retention_s) then retention_s = string.format('%d', own) end
  if tonumber(retention_s) > 0 then redis.call('EXPIRE', key, retention_s) else redis.call('DEL', key) end
end

-- q: {stats, events, queue, retention}: the queue's stats HASH, events
-- channel, name, and the cancelled retention (s).
local function end_cancelled(q, key, id, task, attempt, worker, now, err)
  local batch = redis.call('HGET', key, 'batch')
  if batch then batch_done(string.sub(key, 1, #key - #id - 4), batch, 'cancelled', now) end
  if err then
    redis.call('HSET', key, 'state', 'cancelled', 'error', err, 'finished_ms', now)
  else
    redis.call('HSET', key, 'state', 'cancelled', 'finished_ms', now)
  end
  redis.call('HDEL', key, 'cancel', 'worker')
  keep_for(key, q.retention)
  redis.call('HINCRBY', q.stats, 'cancelled', 1)
  local extra = nil
  if err then extra = ',"error":' .. cjson.encode(err) end
  publish_event(q.events, id, q.queue, task, 'cancelled', attempt, worker, now, extra)
end

-- pending: the queue's pending LIST; key: the job's HASH; q as for
-- end_cancelled; worker: whose hand-back it is (for the event). Returns
-- 'pending' (with the attempts counter after the uncount) or 'cancelled'.
local function hand_back(pending, key, id, q, worker, now)
  local f = redis.call('HMGET', key, 'cancel', 'task', 'attempts')
  local attempts = (tonumber(f[3]) or 1) - 1
  if attempts < 0 then attempts = 0 end
  if f[1] then
    -- Cancelled while it ran: it must not run again.
    redis.call('HSET', key, 'attempts', attempts)
    end_cancelled(q, key, id, f[2], attempts, worker, now, nil)
    return 'cancelled', attempts
  end
  redis.call('HSET', key, 'attempts', attempts, 'state', 'pending')
  redis.call('HDEL', key, 'worker')
  redis.call('RPUSH', pending, id)
  return 'pending', attempts
end

