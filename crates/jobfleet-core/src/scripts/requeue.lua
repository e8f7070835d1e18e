-- requeue.lua: a worker hands back the jobs it holds (graceful shutdown).
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  pending LIST       KEYS[3]  workers ZSET
-- KEYS[4]  stats HASH
-- ARGV[1]  worker id          ARGV[2]  job key prefix
-- ARGV[3]  notify channel     ARGV[4]  '1' to also leave the workers set
-- ARGV[5]  events channel     ARGV[6]  queue name
-- ARGV[7]  completed/cancelled retention, s
--
-- A handed-back attempt did not reach an outcome, so it is not counted.
-- The jobs go to the claim end of pending; a job whose cancel was requested
-- while it ran ends cancelled instead. Returns how many were handed back.

local q = {stats = KEYS[4], events = ARGV[5], queue = ARGV[6], retention = ARGV[7]}
local now = nil
local n, requeued = 0, 0
local whole = true
while true do
  local id = redis.call('LINDEX', KEYS[1], -1)
  if not id then break end
  local key = ARGV[2] .. id
  -- Not here (its slot is moving): the rest stays, and so does the worker's
  -- entry in the workers set, so recovery hands it back later.
  if not here(key, ARGV[2]) then
    whole = false
    break
  end
  redis.call('RPOP', KEYS[1])
  if redis.call('EXISTS', key) == 1 then
    now = now or now_ms()
    if hand_back(KEYS[2], key, id, q, ARGV[1], now) == 'pending' then requeued = requeued + 1 end
    n = n + 1
  end
end
if ARGV[4] == '1' and whole then redis.call('ZREM', KEYS[3], ARGV[1]) end
if requeued > 0 then redis.call(PUBLISH, ARGV[3], requeued) end
return n
