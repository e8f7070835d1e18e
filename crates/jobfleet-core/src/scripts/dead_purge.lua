-- dead_purge.lua: delete dead jobs for good, in chunks.
--
-- KEYS[1]  dead ZSET
-- ARGV[1]  job key prefix
-- ARGV[2]  'all': the oldest ARGV[3] entries of the dead set;
--          'ids': the ids in ARGV[3..] (at most 1,000 per call)
--
-- Every examined id leaves the dead set, but only a record whose state is
-- `dead` is deleted: an id that now names another job (an idempotency key
-- used again) keeps its record. The caller repeats 'all' until fewer than
-- ARGV[3] entries were examined.
-- Returns {dead jobs deleted, entries examined}.

local ids
if ARGV[2] == 'all' then
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
else
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  -- Not here (its slot is moving): the rest waits for another call.
  if not here(key, ARGV[1]) then break end
  if redis.call('ZREM', KEYS[1], id) == 1 then
    if redis.call('HGET', key, 'state') == 'dead' then
      redis.call('DEL', key)
      n = n + 1
    end
  end
end
return {n, #ids}
