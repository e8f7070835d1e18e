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

-- submit.lua: create jobs and make them runnable (one call for a whole batch).
--
-- KEYS[1]   pending LIST
-- KEYS[2]   scheduled ZSET
-- KEYS[3]   stats HASH
-- KEYS[4]   dead ZSET
-- KEYS[4+i] job HASH of the i-th job
-- ARGV[1]   notify channel
-- ARGV[2 ..] for the i-th job, 6 values each:
--           id, task, payload (JSON text), max_attempts, timeout_ms, delay_ms
--           or 8 values each (the same for every job of the call), adding:
--           key_ttl_s    the least time the record is kept once the job
--                        completed or was cancelled, so its id (idempotency
--                        key) holds that long whatever the retention ('0': the
--                        retention alone)
--           traceparent  a W3C trace context for the worker's span ('': none)
--           or 12 values each, adding:
--           unique_key   at most one live job per key ('': not unique)
--           unique_ms    how long the key's lock holds at most, ms
--           debounce     '1': the job waits delay_ms after the last submit
--                        of its key, each submit replacing its payload
--           batch        the batch it belongs to ('': none): its HASH
--                        `P:{Q}:batch:<id>` must exist and not be sealed
--
-- Unique: the lock is the STRING `P:{Q}:unique:<key>` (its prefix is the
-- stats key's, `stats` replaced), holding the id of the job that took it.
-- While that job is pending, scheduled or active, a submit of the key
-- creates nothing and replies with that job's id. A debounced submit only
-- finds a job still scheduled: it replaces that job's payload and moves
-- its run-at to now + delay_ms (a job already running does not hold the
-- key: the newer submit is a new job). Otherwise (no lock, or its job is final or gone) the job
-- is created and takes the lock (PX unique_ms). Nothing is released when a
-- job ends: the next submit reads the holder's state, so acks pay nothing.
--
-- Every job is checked before anything is written, so a bad one submits
-- none: the id must be 1 to 200 bytes of UTF-8 without whitespace, the task
-- 1 to 200 bytes, max_attempts, timeout_ms and delay_ms decimal integers, the
-- delay at most 100 years. A refusal is an error reply starting with
-- `ERR jobfleet: invalid job`.
--
-- A job whose HASH already exists (same id: an idempotency key used twice)
-- is left alone. A new job's id leaves the dead set: an entry there whose
-- record expired must never act on it. Returns one value per job: 1
-- created, 0 already existed, or (unique) the id of the live job that
-- holds the key.
--
-- Cost per job is what bounds throughput (Redis runs every script on one
-- core): the ready ids go to pending in one LPUSH per batch, and `now` is
-- passed as text, since Redis 7.0 formats every Lua number argument with
-- %.17g (glibc's float printing, ~9% of Redis' CPU under load).

local MAX_DELAY_MS = 3155760000000
local n = #KEYS - 4
local stride = 6
if n > 0 and #ARGV == 1 + n * 8 then stride = 8 end
if n > 0 and #ARGV == 1 + n * 12 then stride = 12 end
if #ARGV ~= 1 + n * stride then
  return redis.error_reply('ERR jobfleet: invalid job batch: ' .. n .. ' job keys but ' .. (#ARGV - 1) .. ' job arguments')
end
local function refuse(i, what)
  return redis.error_reply('ERR jobfleet: invalid job #' .. i .. ': ' .. what)
end
for i = 1, n do
  local a = 2 + (i - 1) * stride
  if not valid_id(ARGV[a]) then
    return refuse(i, 'the id must be 1 to 200 bytes of UTF-8 without whitespace')
  end
  if #ARGV[a + 1] == 0 or #ARGV[a + 1] > 200 then return refuse(i, 'the task name must be 1 to 200 bytes') end
  for k, name in ipairs({'max_attempts', 'timeout_ms', 'delay_ms', 'key_ttl_s'}) do
    local v = ARGV[a + 2 + k]
    if k == 4 and stride == 6 then break end
    if not string.find(v, '^%d+$') or #v > 15 then
      return refuse(i, name .. ' must be a decimal integer below 10^15, not ' .. string.format('%q', v))
    end
  end
  if tonumber(ARGV[a + 5]) > MAX_DELAY_MS then return refuse(i, 'delay_ms is over 100 years') end
  if stride >= 8 and ARGV[a + 7] ~= '' and not string.find(ARGV[a + 7], '^%x%x%-%x+%-%x+%-%x%x$') then
    return refuse(i, 'traceparent must be a W3C trace context (00-<trace id>-<parent id>-<flags>)')
  end
  if stride == 12 then
    if #ARGV[a + 8] > 200 then return refuse(i, 'the unique key must be at most 200 bytes') end
    if not string.find(ARGV[a + 9], '^%d+$') or #ARGV[a + 9] > 15 then
      return refuse(i, 'unique_ms must be a decimal integer below 10^15')
    end
    if ARGV[a + 10] ~= '0' and ARGV[a + 10] ~= '1' then return refuse(i, "debounce must be '0' or '1'") end
    if ARGV[a + 8] ~= '' and ARGV[a + 9] == '0' then return refuse(i, 'unique_ms must be above 0') end
    if ARGV[a + 11] ~= '' then
      local batch = string.sub(KEYS[3], 1, -6) .. 'batch:' .. ARGV[a + 11]
      if redis.call('EXISTS', batch) == 0 or redis.call('HEXISTS', batch, 'total') == 1 then
        return refuse(i, 'batch ' .. ARGV[a + 11] .. ' is not open (never opened, sealed, or expired)')
      end
    end
  end
end
local unique_prefix = string.sub(KEYS[3], 1, -6) .. 'unique:'
local LIVE = {pending = true, scheduled = true, active = true}

local now_n = now_ms()
local now = tostring(now_n)
local created = {}
local ready = {}
local submitted = 0
local any_dead = redis.call('ZCARD', KEYS[4]) > 0
for i = 1, n do
  local key = KEYS[4 + i]
  local a = 2 + (i - 1) * stride
  local lock, holder = nil, nil
  if stride == 12 and ARGV[a + 8] ~= '' then
    lock = unique_prefix .. ARGV[a + 8]
    local held = redis.call('GET', lock)
    if held then
      local held_key = string.sub(key, 1, #key - #ARGV[a]) .. held
      local state = redis.call('HGET', held_key, 'state')
      if ARGV[a + 10] == '1' then
        -- Debounced: only a job still waiting is replaced; once it runs,
        -- a newer submit is a new job.
        if state == 'scheduled' then
          holder = held
          local run_at = string.format('%d', now_n + tonumber(ARGV[a + 5]))
          redis.call('HSET', held_key, 'payload', ARGV[a + 2], 'run_at_ms', run_at)
          redis.call('ZADD', KEYS[2], 'XX', run_at, held)
        end
      elseif LIVE[state] then
        holder = held
      end
    end
  end
  if holder then
    created[i] = holder
  elseif redis.call('EXISTS', key) == 1 then
    created[i] = 0
  else
    local id = ARGV[a]
    if ARGV[a + 5] ~= '0' then
      local run_at = string.format('%d', now_n + tonumber(ARGV[a + 5]))
      redis.call('HSET', key, 'task', ARGV[a + 1], 'payload', ARGV[a + 2], 'state', 'scheduled',
        'max_attempts', ARGV[a + 3], 'timeout_ms', ARGV[a + 4], 'created_ms', now, 'run_at_ms', run_at)
      redis.call('ZADD', KEYS[2], run_at, id)
    else
      redis.call('HSET', key, 'task', ARGV[a + 1], 'payload', ARGV[a + 2], 'state', 'pending',
        'max_attempts', ARGV[a + 3], 'timeout_ms', ARGV[a + 4], 'created_ms', now)
      ready[#ready + 1] = id
    end
    if stride >= 8 then
      if ARGV[a + 6] ~= '0' then redis.call('HSET', key, 'key_ttl_s', ARGV[a + 6]) end
      if ARGV[a + 7] ~= '' then redis.call('HSET', key, 'traceparent', ARGV[a + 7]) end
    end
    if lock then
      redis.call('SET', lock, id, 'PX', ARGV[a + 9])
      redis.call('HSET', key, 'unique_key', ARGV[a + 8])
    end
    if stride == 12 and ARGV[a + 11] ~= '' then
      redis.call('HSET', key, 'batch', ARGV[a + 11])
      redis.call('HINCRBY', string.sub(KEYS[3], 1, -6) .. 'batch:' .. ARGV[a + 11], 'added', 1)
    end
    if any_dead then redis.call('ZREM', KEYS[4], id) end
    submitted = submitted + 1
    created[i] = 1
  end
end
-- unpack is bounded by Lua's C stack (about 8,000 values): push in slices.
for s = 1, #ready, 1000 do
  redis.call('LPUSH', KEYS[1], unpack(ready, s, math.min(s + 999, #ready)))
end
-- Always a write, even when every job already existed (by 0 then): a
-- following WAIT measures the replication of this call's writes, and a call
-- that wrote nothing would let it confirm jobs no replica may have yet.
redis.call('HINCRBY', KEYS[3], 'submitted', submitted)
if #ready > 0 then redis.call(PUBLISH, ARGV[1], #ready) end
return created
