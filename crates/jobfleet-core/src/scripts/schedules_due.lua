-- schedules_due.lua: the schedules of a queue whose next tick has come.
--
-- KEYS[1]  schedule_next ZSET (name -> next tick, Redis ms)
-- KEYS[2]  schedules HASH (name -> schedule JSON)
-- ARGV[1]  the most to return
--
-- Read only: firing is schedule_fire.lua's, which checks again.
-- Returns {now, then per due schedule: name, tick, schedule JSON ('' if
-- the HASH has none)}.

local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {now}
for i = 1, #due, 2 do
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], due[i]) or ''
end
return out
