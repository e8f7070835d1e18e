-- reconcile.lua: hand back the jobs in a worker's processing list that the
-- worker does not hold. They get there when a claim's reply was lost (the
-- connection dropped after Redis ran the script), or when an ack or fail
-- was rolled back (a failover to a replica that missed it, a crash under
-- `appendfsync everysec`): no task runs them and, with the worker alive and
-- beating, recovery would never free them.
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  pending LIST       KEYS[3]  stats HASH
-- ARGV[1]  job key prefix     ARGV[2]  notify channel
-- ARGV[3]  events channel     ARGV[4]  queue name
-- ARGV[5]  completed/cancelled retention, s
-- ARGV[6]  the worker id (for events)
-- ARGV[7..] ids the worker holds (running, or finished and not yet written)
--
-- Like a hand-back, the unseen attempt is not counted, the jobs go to the
-- claim end of pending, and a job whose cancel was requested ends cancelled.
-- O(length of the processing list + held ids): bounded by the worker's
-- concurrency, so workers may run it often. Returns how many were handed back.

local held = {}
for i = 7, #ARGV do held[ARGV[i]] = true end
local q = {stats = KEYS[3], events = ARGV[3], queue = ARGV[4], retention = ARGV[5]}
local now = nil
local n, requeued = 0, 0
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. id
  -- Not here (its slot is moving): left for the next reconcile.
  if not held[id] and not here(key, ARGV[1]) then break end
  if not held[id] then
    redis.call('LREM', KEYS[1], 1, id)
    if redis.call('EXISTS', key) == 1 then
      now = now or now_ms()
      if hand_back(KEYS[2], key, id, q, ARGV[6], now) == 'pending' then requeued = requeued + 1 end
      n = n + 1
    end
  end
end
if requeued > 0 then redis.call(PUBLISH, ARGV[2], requeued) end
return n
