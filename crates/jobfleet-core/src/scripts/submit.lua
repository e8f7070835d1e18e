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
