-- requeue.lua: a worker hands back the jobs it holds (graceful shutdown).
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  pending LIST       KEYS[3]  workers ZSET
-- ARGV[1]  worker id          ARGV[2]  job key prefix
-- ARGV[3]  notify channel     ARGV[4]  '1' to also leave the workers set
--
-- A handed-back attempt did not reach an outcome, so it is not counted.
-- The jobs go to the claim end of pending. Returns how many were handed back.

local n = 0
while true do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  local key = ARGV[2] .. id
  if redis.call('EXISTS', key) == 1 then
    hand_back(KEYS[2], key, id)
    n = n + 1
  end
end
if ARGV[4] == '1' then redis.call('ZREM', KEYS[3], ARGV[1]) end
if n > 0 then redis.call('PUBLISH', ARGV[3], n) end
return n
