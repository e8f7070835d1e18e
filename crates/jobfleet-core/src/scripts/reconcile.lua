-- reconcile.lua: hand back the jobs in a worker's processing list that the
-- worker does not hold. A claim whose reply was lost (the connection dropped
-- after Redis ran the script) leaves ids there that no task runs and, with
-- the worker alive and beating, recovery would never free them.
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  pending LIST
-- ARGV[1]  job key prefix     ARGV[2]  notify channel
-- ARGV[3..] ids the worker holds (running, or finished and not yet written)
--
-- Like a hand-back, the unseen attempt is not counted, and the jobs go to
-- the claim end of pending. Returns how many were handed back.

local held = {}
for i = 3, #ARGV do held[ARGV[i]] = true end
local n = 0
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if not held[id] then
    redis.call('LREM', KEYS[1], 1, id)
    local key = ARGV[1] .. id
    if redis.call('EXISTS', key) == 1 then
      hand_back(KEYS[2], key, id)
      n = n + 1
    end
  end
end
if n > 0 then redis.call('PUBLISH', ARGV[2], n) end
return n
