-- claim.lua: move up to n ready jobs into one worker's processing list.
--
-- KEYS[1]  pending LIST
-- KEYS[2]  processing LIST of this worker
-- KEYS[3]  workers ZSET (worker -> last heartbeat)
-- KEYS[4]  stats HASH
-- ARGV[1]  worker id
-- ARGV[2]  n, the most jobs to claim
-- ARGV[3]  job key prefix
--
-- The move is pending -> processing inside this one script (LMPOP, then
-- LPUSH of the same ids), so exactly one worker holds an id.
-- A worker that is not in the workers set was recovered (declared dead): it
-- must re-register under a fresh id, so nothing is claimed.
-- Returns {'recovered'} or {'ok', then per job: id, task, payload, attempt,
-- max_attempts, timeout_ms}. Fields missing from a hand-written record come
-- back as '' so the worker can fail the job with a clear error. An id whose
-- record no longer exists is dropped and counted as `orphaned`.
--
-- Two redis.call per job (HMGET, HSET): the move is one LMPOP and one LPUSH
-- per batch, a record is known missing when HMGET finds none of task,
-- payload and state, and the attempt is counted in the same HSET. `now` and
-- the attempt are passed as text (see submit.lua).

if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then
  return {'recovered'}
end
local now = tostring(now_ms())
redis.call('ZADD', KEYS[3], now, ARGV[1])
local out = {'ok'}
local popped = redis.call('LMPOP', 1, KEYS[1], 'RIGHT', 'COUNT', ARGV[2])
if not popped then return out end
local ids = popped[2]
redis.call('LPUSH', KEYS[2], unpack(ids))
local orphaned = 0
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local f = redis.call('HMGET', key, 'task', 'payload', 'max_attempts', 'timeout_ms', 'attempts', 'state')
  if not (f[1] or f[2] or f[6]) then
    redis.call('LREM', KEYS[2], 1, id)
    orphaned = orphaned + 1
  else
    local attempt = string.format('%d', (tonumber(f[5]) or 0) + 1)
    redis.call('HSET', key, 'attempts', attempt, 'state', 'active', 'worker', ARGV[1], 'started_ms', now)
    out[#out + 1] = id
    out[#out + 1] = f[1] or ''
    out[#out + 1] = f[2] or ''
    out[#out + 1] = attempt
    out[#out + 1] = f[3] or ''
    out[#out + 1] = f[4] or ''
  end
end
if orphaned > 0 then redis.call('HINCRBY', KEYS[4], 'orphaned', orphaned) end
return out
