-- dead_purge.lua: delete dead jobs for good.
--
-- KEYS[1]  dead ZSET
-- ARGV[1]  job key prefix
-- ARGV[2..] ids to purge; none means every dead job
--
-- Returns how many dead jobs were deleted.

local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', KEYS[1], 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', ARGV[1] .. id)
    n = n + 1
  end
end
return n
