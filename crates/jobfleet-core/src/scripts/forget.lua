-- forget.lua: remove what is left of a queue that is empty and unserved.
--
-- KEYS[1]  pending LIST       KEYS[2]  scheduled ZSET
-- KEYS[3]  dead ZSET          KEYS[4]  workers ZSET
-- KEYS[5]  stats HASH
-- ARGV[1]  processing list key prefix
-- ARGV[2]  a worker that beat within this many ms still serves the queue
--
-- Refuses while the queue holds any job (pending, scheduled, dead, or in a
-- processing list) or a live worker serves it. Otherwise deletes its stats
-- HASH and workers ZSET (entries of workers long gone, holding nothing).
-- The caller then removes the name from the global queues SET, which lives
-- in another slot. Returns 'forgotten' or 'busy:<what>'.

local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then return 'busy:pending' end
if redis.call('ZCARD', KEYS[2]) > 0 then return 'busy:scheduled' end
if redis.call('ZCARD', KEYS[3]) > 0 then return 'busy:dead' end
for _, w in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. w) == 1 then return 'busy:active' end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[4], now - tonumber(ARGV[2]), '+inf', 'LIMIT', 0, 1)
if #live > 0 then return 'busy:workers' end
redis.call('DEL', KEYS[4], KEYS[5])
return 'forgotten'
