-- ack.lua: complete jobs a worker holds (one call for a batch of acks).
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  stats HASH
-- ARGV[1]  worker id
-- ARGV[2]  job key prefix
-- ARGV[3]  events channel
-- ARGV[4]  queue name
-- ARGV[5]  retention of completed records, seconds (0: delete at once)
-- ARGV[6+(i-1)*2], ARGV[7+(i-1)*2]  for the i-th job: id, result (JSON text)
--
-- The fence: an id no longer in this worker's processing list (recovered and
-- handed to another worker, or already acked) is refused, never applied.
-- Returns one integer per job: 1 completed, 0 refused.

local now = now_ms()
local out = {}
local done = 0
for i = 6, #ARGV, 2 do
  local id, result = ARGV[i], ARGV[i + 1]
  if redis.call('LREM', KEYS[1], -1, id) == 0 then
    out[#out + 1] = 0
  else
    local key = ARGV[2] .. id
    local f = redis.call('HMGET', key, 'task', 'attempts', 'started_ms')
    local retention = tonumber(ARGV[5])
    if retention > 0 then
      redis.call('HSET', key, 'state', 'completed', 'result', result, 'finished_ms', now)
      redis.call('HDEL', key, 'cancel')
      redis.call('EXPIRE', key, retention)
    else
      redis.call('DEL', key)
    end
    publish_event(ARGV[3], id, ARGV[4], f[1], 'completed', f[2], ARGV[1], now,
      ',"duration_ms":' .. (now - (tonumber(f[3]) or now)) .. ',"result":' .. result)
    done = done + 1
    out[#out + 1] = 1
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[2], 'completed', done) end
return out
