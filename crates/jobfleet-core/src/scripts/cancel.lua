-- cancel.lua: cancel one job.
--
-- KEYS[1]  pending LIST       KEYS[2]  scheduled ZSET
-- KEYS[3]  stats HASH         KEYS[4]  job HASH
-- ARGV[1]  job id             ARGV[2]  events channel
-- ARGV[3]  control channel    ARGV[4]  queue name
-- ARGV[5]  retention of the cancelled record, s
--
-- A pending or scheduled job is removed and cancelled at once. A running job
-- is flagged and its worker told on the control channel; it ends cancelled
-- when the worker stops it (or completed, if it finished first).
-- Returns 'cancelled' | 'cancelling' | 'missing' | 'final:<state>' when it
-- already had a final state.

local id = ARGV[1]
local state = redis.call('HGET', KEYS[4], 'state')
if not state then return 'missing' end
local removed = 0
if state == 'pending' then
  removed = redis.call('LREM', KEYS[1], 0, id)
elseif state == 'scheduled' then
  removed = redis.call('ZREM', KEYS[2], id)
elseif state == 'active' then
  redis.call('HSET', KEYS[4], 'cancel', 1)
  redis.call('PUBLISH', ARGV[3], 'cancel ' .. id)
  return 'cancelling'
else
  return 'final:' .. state
end
local now = now_ms()
local f = redis.call('HMGET', KEYS[4], 'task', 'attempts')
redis.call('HSET', KEYS[4], 'state', 'cancelled', 'finished_ms', now)
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[4], ARGV[5]) else redis.call('DEL', KEYS[4]) end
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
publish_event(ARGV[2], id, ARGV[4], f[1], 'cancelled', f[2], '', now, nil)
return 'cancelled'
