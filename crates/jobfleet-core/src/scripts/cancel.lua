-- cancel.lua: cancel one job.
--
-- KEYS[1]  pending LIST (unused: kept so the layout stays stable)
-- KEYS[2]  scheduled ZSET
-- KEYS[3]  stats HASH         KEYS[4]  job HASH
-- ARGV[1]  job id             ARGV[2]  events channel
-- ARGV[3]  control channel    ARGV[4]  queue name
-- ARGV[5]  retention of the cancelled record, s (0: delete at once)
--
-- O(1) whatever the backlog. A pending job is marked cancelled in place:
-- `state=cancelled`, `queued=1`; its id stays in pending until a claim skips
-- it, and only then does its record's retention start (so the id cannot
-- name a new job while the stale entry waits). A scheduled job is removed
-- from scheduled and cancelled at once. A running job is flagged and its
-- worker told on the control channel; it ends cancelled when the worker
-- stops it (or completed, if it finished first).
-- Returns 'cancelled' | 'cancelling' | 'missing' | 'final:<state>' when it
-- already had a final state.

local id = ARGV[1]
local state = redis.call('HGET', KEYS[4], 'state')
if not state then return 'missing' end
local now = now_ms()
local q = {stats = KEYS[3], events = ARGV[2], queue = ARGV[4], retention = ARGV[5]}
local f = redis.call('HMGET', KEYS[4], 'task', 'attempts', 'batch')
if state == 'pending' then
  if f[3] then batch_done(string.sub(KEYS[4], 1, #KEYS[4] - #id - 4), f[3], 'cancelled', now) end
  redis.call('HSET', KEYS[4], 'state', 'cancelled', 'finished_ms', now, 'queued', 1)
  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
  redis.call('HINCRBY', KEYS[3], 'pending_cancelled', 1)
  publish_event(ARGV[2], id, ARGV[4], f[1], 'cancelled', f[2], '', now, nil)
  return 'cancelled'
elseif state == 'scheduled' then
  redis.call('ZREM', KEYS[2], id)
  end_cancelled(q, KEYS[4], id, f[1], f[2], '', now, nil)
  return 'cancelled'
elseif state == 'active' then
  redis.call('HSET', KEYS[4], 'cancel', 1)
  redis.call(PUBLISH, ARGV[3], 'cancel ' .. id)
  return 'cancelling'
end
return 'final:' .. state
