-- fail.lua: record a failed attempt; retry with backoff, bury, or cancel.
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  scheduled ZSET
-- KEYS[3]  dead ZSET
-- KEYS[4]  stats HASH
-- KEYS[5]  job HASH
-- ARGV[1]  worker id            ARGV[2]  job id
-- ARGV[3]  error message        ARGV[4]  kind: retry | permanent | cancelled
-- ARGV[5]  backoff base ms      ARGV[6]  backoff cap ms
-- ARGV[7]  jitter in [0, 1): the delay grows by this fraction
-- ARGV[8]  events channel       ARGV[9]  queue name
-- ARGV[10] job key prefix       ARGV[11] completed/cancelled retention, s
-- ARGV[12] dead retention, s    ARGV[13] dead set max count
-- ARGV[14] dead set max age, ms
--
-- The fence as in ack.lua. Only the record's `cancel` flag ends a job
-- cancelled: with the flag set any failure becomes `cancelled`, and a
-- failure of kind `cancelled` without it (a stop meant for another job) is
-- a retryable failure. Otherwise a permanent error, or no attempts left,
-- buries it; else it is scheduled at
-- now + min(cap, base * 2^(attempt-1)) * (1 + jitter).
-- Returns {'stale'} | {'cancelled'} | {'dead'} | {'scheduled', run_at_ms}.

local id, err, kind = ARGV[2], ARGV[3], ARGV[4]
if redis.call('LREM', KEYS[1], -1, id) == 0 then
  return {'stale'}
end
local now = now_ms()
local key = KEYS[5]
local f = redis.call('HMGET', key, 'task', 'attempts', 'max_attempts', 'started_ms', 'cancel', 'batch')
local attempt = tonumber(f[2]) or 1
local extra = ',"duration_ms":' .. since(now, f[4]) .. ',"error":' .. cjson.encode(err)
if f[5] then
  kind = 'cancelled'
elseif kind == 'cancelled' then
  kind = 'retry'
end
if kind == 'cancelled' then
  if f[6] then batch_done(string.sub(ARGV[10], 1, -5), f[6], 'cancelled', now) end
  redis.call('HSET', key, 'state', 'cancelled', 'error', err, 'finished_ms', now)
  redis.call('HDEL', key, 'cancel')
  keep_for(key, ARGV[11])
  redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
  publish_event(ARGV[8], id, ARGV[9], f[1], 'cancelled', attempt, ARGV[1], now, extra)
  return {'cancelled'}
end
redis.call('HINCRBY', KEYS[4], 'failed', 1)
if kind == 'permanent' or attempt >= (tonumber(f[3]) or 1) then
  bury(KEYS[3], KEYS[4], key, ARGV[10], id, now, err, ARGV[12], ARGV[13], ARGV[14])
  publish_event(ARGV[8], id, ARGV[9], f[1], 'dead', attempt, ARGV[1], now, extra)
  return {'dead'}
end
local delay = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ (attempt - 1))
local run_at = string.format('%d', now + math.floor(delay * (1 + tonumber(ARGV[7]))))
redis.call('ZADD', KEYS[2], run_at, id)
redis.call('HSET', key, 'state', 'scheduled', 'error', err, 'run_at_ms', run_at)
redis.call('HINCRBY', KEYS[4], 'retried', 1)
publish_event(ARGV[8], id, ARGV[9], f[1], 'failed', attempt, ARGV[1], now, extra .. ',"run_at_ms":' .. run_at)
return {'scheduled', run_at}
