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
-- The move is LMOVE pending -> processing, so exactly one worker holds an id.
-- A worker that is not in the workers set was recovered (declared dead): it
-- must re-register under a fresh id, so nothing is claimed.
-- Returns {'recovered'} or {'ok', then per job: id, task, payload, attempt,
-- max_attempts, timeout_ms}. Fields missing from a hand-written record come
-- back as '' so the worker can fail the job with a clear error. An id whose
-- record no longer exists is dropped and counted as `orphaned`.

if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then
  return {'recovered'}
end
local now = now_ms()
redis.call('ZADD', KEYS[3], now, ARGV[1])
local out = {'ok'}
for _ = 1, tonumber(ARGV[2]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  local key = ARGV[3] .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('LREM', KEYS[2], 1, id)
    redis.call('HINCRBY', KEYS[4], 'orphaned', 1)
  else
    local f = redis.call('HMGET', key, 'task', 'payload', 'max_attempts', 'timeout_ms')
    local attempt = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'active', 'worker', ARGV[1], 'started_ms', now)
    out[#out + 1] = id
    out[#out + 1] = f[1] or ''
    out[#out + 1] = f[2] or ''
    out[#out + 1] = attempt
    out[#out + 1] = f[3] or ''
    out[#out + 1] = f[4] or ''
  end
end
return out
