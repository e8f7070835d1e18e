-- stats.lua: one consistent read of a queue's sizes and counters.
--
-- KEYS[1]  pending LIST       KEYS[2]  scheduled ZSET
-- KEYS[3]  dead ZSET          KEYS[4]  workers ZSET
-- KEYS[5]  stats HASH
-- ARGV[1]  processing list key prefix
--
-- "pending" is the pending list's length less the jobs cancelled in place
-- that no claim has skipped yet (the stats field `pending_cancelled`).
-- "active" is the sum of the processing lists of the workers in the set.
-- Returns {pending, scheduled, dead, active, workers, then the stats HASH
-- as field, value pairs}.

local active = 0
local workers = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, worker in ipairs(workers) do
  active = active + redis.call('LLEN', ARGV[1] .. worker)
end
local cancelled = tonumber(redis.call('HGET', KEYS[5], 'pending_cancelled')) or 0
local out = {
  math.max(0, redis.call('LLEN', KEYS[1]) - cancelled),
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  active,
  #workers,
}
for _, v in ipairs(redis.call('HGETALL', KEYS[5])) do out[#out + 1] = v end
return out
