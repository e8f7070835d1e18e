-- heartbeat.lua: a worker says it is alive, in one queue's workers set.
--
-- KEYS[1]  workers ZSET (worker -> last heartbeat, Redis ms)
-- ARGV[1]  worker id
-- ARGV[2]  '1' to register (add if absent), '0' to refresh only
--
-- A refresh of a worker that is no longer in the set (it was recovered while
-- it could not beat) does not re-add it: the worker must take a fresh id.
-- Returns the Redis time in ms, or 0 when a refresh found the worker gone.

local now = now_ms()
if ARGV[2] ~= '1' and redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now
