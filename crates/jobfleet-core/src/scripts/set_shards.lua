-- set_shards.lua: raise a queue's shard count.
--
-- KEYS[1]  the queue's meta HASH (shard 0's slot)
-- ARGV[1]  the shard count wanted
--
-- The count only grows: jobs stay in the shard they were submitted to, and
-- a lower count would leave the higher shards' jobs unserved. Returns the
-- count before (1 when never set); it is unchanged when that was higher.

local before = tonumber(redis.call('HGET', KEYS[1], 'shards') or '1')
if tonumber(ARGV[1]) >= before then
  redis.call('HSET', KEYS[1], 'shards', ARGV[1])
end
return before
