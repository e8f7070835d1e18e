-- worker_info.lua: publish what a worker process is (for stats and dashboards).
--
-- KEYS[1]  global workers ZSET (worker -> last beat, Redis ms)
-- KEYS[2]  this worker's info HASH
-- ARGV[1]  worker id          ARGV[2]  ttl of the info HASH, ms
-- ARGV[3..] field, value pairs for the info HASH
--
-- Entries not refreshed for an hour are dropped from the ZSET. Returns the
-- Redis time in ms.

local now = now_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], 'last_heartbeat_ms', now, unpack(fields))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return now
