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
--
-- Every job is checked before anything is written, so a bad one submits
-- none: the id must be 1 to 200 bytes of UTF-8 without whitespace, the task
-- 1 to 200 bytes, max_attempts, timeout_ms and delay_ms decimal integers, the
-- delay at most 100 years. A refusal is an error reply starting with
-- `ERR jobfleet: invalid job`.
--
-- A job whose HASH already exists (same id: an idempotency key used twice)
-- is left alone. A new job's id leaves the dead set: an entry there whose
-- record expired must never act on it. Returns one integer per job: 1
-- created, 0 already existed.
--
-- Cost per job is what bounds throughput (Redis runs every script on one
-- core): the ready ids go to pending in one LPUSH per batch, and `now` is
-- passed as text, since Redis 7.0 formats every Lua number argument with
-- %.17g (glibc's float printing, ~9% of Redis' CPU under load).

local MAX_DELAY_MS = 3155760000000
local n = #KEYS - 4
local stride = 6
if n > 0 and #ARGV == 1 + n * 8 then stride = 8 end
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
  if stride == 8 and ARGV[a + 7] ~= '' and not string.find(ARGV[a + 7], '^%x%x%-%x+%-%x+%-%x%x$') then
    return refuse(i, 'traceparent must be a W3C trace context (00-<trace id>-<parent id>-<flags>)')
  end
end

local now_n = now_ms()
local now = tostring(now_n)
local created = {}
local ready = {}
local submitted = 0
local any_dead = redis.call('ZCARD', KEYS[4]) > 0
for i = 1, n do
  local key = KEYS[4 + i]
  local a = 2 + (i - 1) * stride
  if redis.call('EXISTS', key) == 1 then
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
    if stride == 8 then
      if ARGV[a + 6] ~= '0' then redis.call('HSET', key, 'key_ttl_s', ARGV[a + 6]) end
      if ARGV[a + 7] ~= '' then redis.call('HSET', key, 'traceparent', ARGV[a + 7]) end
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
