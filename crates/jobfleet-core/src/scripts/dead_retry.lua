-- dead_retry.lua: give dead jobs a fresh set of attempts, in chunks.
--
-- KEYS[1]  dead ZSET          KEYS[2]  pending LIST
-- ARGV[1]  job key prefix     ARGV[2]  notify channel
-- ARGV[3]  'all': the oldest ARGV[4] entries of the dead set;
--          'ids': the ids in ARGV[4..] (at most 1,000 per call)
--
-- Only a record whose state is `dead` is retried: an entry whose record
-- expired, or whose id now names another job (an idempotency key used
-- again), is dropped from the dead set and left alone. Ids that are not
-- valid UTF-8 stay dead. The caller repeats 'all' until fewer than ARGV[4]
-- entries were examined, so no call blocks Redis for long.
-- Returns {retried, entries examined}.

local ids
if ARGV[3] == 'all' then
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)
else
  ids = {}
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  -- Not here (its slot is moving): the rest waits for another call.
  if not here(key, ARGV[1]) then break end
  local dead = redis.call('HGET', key, 'state') == 'dead'
  if dead and valid_id(id) then
    if redis.call('ZREM', KEYS[1], id) == 1 then
      redis.call('HSET', key, 'state', 'pending', 'attempts', 0, 'recoveries', 0)
      redis.call('HDEL', key, 'finished_ms', 'worker')
      redis.call('PERSIST', key)
      -- A batch job that runs again is not dead any more: its batch counts
      -- it again when it ends (unless the batch already finished).
      local batch = redis.call('HGET', key, 'batch')
      if batch then
        local bkey = string.sub(ARGV[1], 1, -5) .. 'batch:' .. batch
        if redis.call('HEXISTS', bkey, 'fired') == 0 then redis.call('HINCRBY', bkey, 'dead', -1) end
      end
      redis.call('LPUSH', KEYS[2], id)
      n = n + 1
    end
  elseif not dead then
    redis.call('ZREM', KEYS[1], id)
  end
end
if n > 0 then redis.call(PUBLISH, ARGV[2], n) end
return {n, #ids}
