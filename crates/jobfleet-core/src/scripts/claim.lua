-- claim.lua: move up to n ready jobs into one worker's processing list.
--
-- KEYS[1]  pending LIST
-- KEYS[2]  processing LIST of this worker
-- KEYS[3]  workers ZSET (worker -> last heartbeat)
-- KEYS[4]  stats HASH
-- KEYS[5]  dead ZSET
-- ARGV[1]  worker id
-- ARGV[2]  n, the most jobs to claim
-- ARGV[3]  job key prefix
-- ARGV[4]  the largest payload a worker runs, bytes (0: no limit)
-- ARGV[5]  events channel      ARGV[6]  queue name
-- ARGV[7]  completed/cancelled retention, s (0: delete at once)
-- ARGV[8]  dead retention, s   ARGV[9]  dead set max count
-- ARGV[10] dead set max age, ms
-- ARGV[11] notify channel
-- ARGV[12] meta HASH of this shard (fields `paused`, and the limits below)
-- ARGV[13] parked SET: tasks with a parked LIST (`<ARGV[13]>:<task>`)
-- ARGV[14] processing list key prefix
-- ARGV[15..] the tasks this worker runs (none given: it runs any task)
--
-- The meta and parked keys are passed in ARGV, not KEYS, as the job keys
-- are: they usually do not exist, and a Cluster turns a script away
-- (TRYAGAIN) while a declared key is missing from a migrating slot.
--
-- The move is pending -> processing inside this one script (LMPOP, then
-- LPUSH of the same ids), so exactly one worker holds an id.
-- A worker that is not in the workers set was recovered (declared dead): it
-- must re-register under a fresh id, so nothing is claimed.
-- A paused queue (`paused` in the shard's meta) gives nothing: its jobs
-- stay where they are until it is resumed.
--
-- Limits, in the same meta HASH (read in the same one call as `paused`):
-- `concurrency` caps the jobs the shard's live workers hold at once (the
-- processing lists of the workers in the set are counted, only when the
-- cap is set); `rate` (jobs per second) with `burst` is a token bucket,
-- `tokens` and `tokens_ms` its state, taken from by each claim.
--
-- Routing: a pending job whose task this worker does not run is not
-- claimed but parked, still `pending`, in the task's parked list, and the
-- queue is notified so a worker that runs it looks. A worker claims from
-- the parked lists of its own tasks first (they hold older jobs), then from
-- pending. So a worker never fails a job for a task it lacks, and jobs for
-- a task no live worker runs wait (stats.lua counts them per task).
--
-- Only ids whose record says `pending` (or has no state: a hand-written
-- record) are claimed. Others are stale entries and are dropped: a job
-- cancelled while it waited (cancel marks it and leaves the id in the list,
-- O(1); its retention starts here), or a second entry of an id that has
-- moved on. An id without a record is dropped and counted as `orphaned`.
-- An id that is not valid UTF-8 (no client could ack it), or a payload over
-- the limit, is buried with the reason. Stale and parked entries do not use
-- up n: the script pops on, examining at most n + 1000 ids per call.
--
-- On a Cluster the ids are looked at before they are popped: at the first
-- one whose record has already moved with a migrating slot (see `here` in
-- common.lua) the claim stops and returns what it has; that id and the ones
-- after it stay in pending, and the new owner serves them once the slot
-- moved. While the slot moves, parked lists are left alone and a job to
-- park goes back to the claim end of pending, ending the claim; the pause
-- flag is read only where it can be (a meta HASH already moved reads as
-- not paused).
--
-- Returns {'recovered'} or {'ok', then per job: id, task, payload, attempt,
-- max_attempts, timeout_ms, traceparent}. Fields missing from a hand-written record come
-- back as '' so the worker can fail the job with a clear error.
--
-- Two redis.call per job (HMGET, HSET): the move is one LMPOP and one LPUSH
-- per batch, and the attempt is counted in the same HSET; the pause and
-- parked checks are one call each per batch. `now` and the attempt are
-- passed as text (see submit.lua).

if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then
  return {'recovered'}
end
local now_n = now_ms()
local now = tostring(now_n)
redis.call('ZADD', KEYS[3], now, ARGV[1])
local meta = redis.pcall('HMGET', ARGV[12], 'paused', 'concurrency', 'rate', 'burst', 'tokens', 'tokens_ms')
if type(meta) ~= 'table' or meta.err then meta = {} end
if meta[1] then
  return {'ok'}
end
local tasks = nil
if #ARGV > 14 then
  tasks = {}
  for i = 15, #ARGV do tasks[ARGV[i]] = true end
end
local moving = CLUSTER and not here(ARGV[3] .. ' no such job', ARGV[3])
local want = tonumber(ARGV[2])
if meta[2] then
  local held = 0
  for _, worker in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local n = redis.pcall('LLEN', ARGV[14] .. worker)
    -- A list that cannot be read (its slot is moving): claim nothing now.
    if type(n) ~= 'number' then return {'ok'} end
    held = held + n
  end
  want = math.min(want, tonumber(meta[2]) - held)
end
local rate = tonumber(meta[3])
local tokens = nil
if rate then
  local burst = tonumber(meta[4]) or rate
  tokens = math.min(burst, (tonumber(meta[5]) or burst) + since(now_n, meta[6] or now_n) * rate / 1000)
  want = math.min(want, math.floor(tokens))
end
if want <= 0 then
  return {'ok'}
end
local budget = want + 1000
local limit = tonumber(ARGV[4])
local out = {'ok'}
local claimed = {}
local examined, orphaned, skipped_cancelled, parked = 0, 0, 0, 0

-- Claims, drops, buries or parks one popped id; false when it is to be
-- parked while the slot moves (the caller puts it back).
local function examine(id)
  local key = ARGV[3] .. id
  examined = examined + 1
  local f = redis.call('HMGET', key, 'task', 'payload', 'max_attempts', 'timeout_ms', 'attempts', 'state', 'queued', 'traceparent')
  if not (f[1] or f[2] or f[6]) then
    orphaned = orphaned + 1
  elseif f[6] and f[6] ~= 'pending' then
    if f[7] then
      redis.call('HDEL', key, 'queued')
      skipped_cancelled = skipped_cancelled + 1
      if f[6] == 'cancelled' then keep_for(key, ARGV[7]) end
    end
  elseif not valid_id(id) then
    bury(KEYS[5], KEYS[4], key, ARGV[3], id, now_n,
      'job id is not valid UTF-8 (or is empty, over 200 bytes, or has whitespace): no client can address it',
      ARGV[8], ARGV[9], ARGV[10])
  elseif tasks and f[1] and not tasks[f[1]] then
    if moving then return false end
    redis.call('LPUSH', ARGV[13] .. ':' .. f[1], id)
    redis.call('SADD', ARGV[13], f[1])
    parked = parked + 1
  elseif limit > 0 and f[2] and #f[2] > limit then
    local reason = 'payload is ' .. #f[2] .. ' bytes, over the ' .. limit .. ' byte limit'
    bury(KEYS[5], KEYS[4], key, ARGV[3], id, now_n, reason, ARGV[8], ARGV[9], ARGV[10])
    publish_event(ARGV[5], id, ARGV[6], f[1], 'dead', f[5], ARGV[1], now, ',"error":' .. cjson.encode(reason))
  else
    local attempt = string.format('%d', (tonumber(f[5]) or 0) + 1)
    redis.call('HSET', key, 'attempts', attempt, 'state', 'active', 'worker', ARGV[1], 'started_ms', now)
    claimed[#claimed + 1] = id
    out[#out + 1] = id
    out[#out + 1] = f[1] or ''
    out[#out + 1] = f[2] or ''
    out[#out + 1] = attempt
    out[#out + 1] = f[3] or ''
    out[#out + 1] = f[4] or ''
    out[#out + 1] = f[8] or ''
  end
  return true
end

if not moving then
  for _, task in ipairs(redis.call('SMEMBERS', ARGV[13])) do
    if #claimed >= want or examined >= budget then break end
    -- A worker that names no tasks runs any, parked ones included.
    if not tasks or tasks[task] then
      local list = ARGV[13] .. ':' .. task
      local popped = redis.call('LMPOP', 1, list, 'RIGHT', 'COUNT', math.min(want - #claimed, budget - examined))
      if popped then
        for _, id in ipairs(popped[2]) do examine(id) end
      end
      if redis.call('EXISTS', list) == 0 then redis.call('SREM', ARGV[13], task) end
    end
  end
end
local stopped = false
while #claimed < want and examined < budget and not stopped do
  local take = math.min(want - #claimed, budget - examined)
  if CLUSTER and not here(ARGV[3] .. ' no such job', ARGV[3]) then
    -- The slot is moving: look before popping, and stop at the first id
    -- whose record is not here, so it and the ids after it stay untouched.
    local ids = redis.call('LRANGE', KEYS[1], -take, -1)
    take = 0
    for i = #ids, 1, -1 do
      if not here(ARGV[3] .. ids[i], ARGV[3]) then
        stopped = true
        break
      end
      take = take + 1
    end
    if take == 0 then break end
  end
  local popped = redis.call('LMPOP', 1, KEYS[1], 'RIGHT', 'COUNT', take)
  if not popped then break end
  for i, id in ipairs(popped[2]) do
    if not examine(id) then
      -- It and the ones popped after it go back to the claim end, in order
      -- (the oldest pushed last, so it is the next to be claimed).
      for j = #popped[2], i, -1 do redis.call('RPUSH', KEYS[1], popped[2][j]) end
      stopped = true
      break
    end
  end
end
for s = 1, #claimed, 1000 do
  redis.call('LPUSH', KEYS[2], unpack(claimed, s, math.min(s + 999, #claimed)))
end
if orphaned > 0 then redis.call('HINCRBY', KEYS[4], 'orphaned', orphaned) end
if skipped_cancelled > 0 then redis.call('HINCRBY', KEYS[4], 'pending_cancelled', -skipped_cancelled) end
if parked > 0 then redis.call(PUBLISH, ARGV[11], parked) end
if tokens then
  redis.pcall('HSET', ARGV[12], 'tokens', tostring(tokens - #claimed), 'tokens_ms', now)
end
return out
