-- promote.lua: move due jobs from scheduled to pending.
--
-- KEYS[1]  scheduled ZSET     KEYS[2]  pending LIST
-- ARGV[1]  job key prefix     ARGV[2]  notify channel
-- ARGV[3]  the most jobs to move in one call
--
-- "Due" is judged by Redis' clock. Only ids whose record says `scheduled`
-- (or has no state: a hand-written record) move; an id without a record,
-- or whose record has moved on, is a stale entry and is dropped.
-- Returns how many jobs were moved.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
for _, id in ipairs(due) do
  local key = ARGV[1] .. id
  -- Not here (its slot is moving): left due, for a later pass.
  if not here(key, ARGV[1]) then break end
  redis.call('ZREM', KEYS[1], id)
  local state = redis.call('HGET', key, 'state')
  if state == 'scheduled' or (not state and redis.call('EXISTS', key) == 1) then
    redis.call('HSET', key, 'state', 'pending')
    redis.call('LPUSH', KEYS[2], id)
    moved = moved + 1
  end
end
if moved > 0 then redis.call(PUBLISH, ARGV[2], moved) end
return moved
