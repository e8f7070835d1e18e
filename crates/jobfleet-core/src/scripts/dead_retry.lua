-- dead_retry.lua: give dead jobs a fresh set of attempts.
--
-- KEYS[1]  dead ZSET          KEYS[2]  pending LIST
-- ARGV[1]  job key prefix     ARGV[2]  notify channel
-- ARGV[3..] ids to retry; none means every dead job
--
-- Returns how many jobs went back to pending.

local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', KEYS[1], 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = ARGV[1] .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'state', 'pending', 'attempts', 0, 'recoveries', 0)
      redis.call('HDEL', key, 'finished_ms', 'worker')
      redis.call('PERSIST', key)
      redis.call('LPUSH', KEYS[2], id)
      n = n + 1
    end
  end
end
if n > 0 then redis.call('PUBLISH', ARGV[2], n) end
return n
