-- submit.lua: create jobs and make them runnable (one call for a whole batch).
--
-- KEYS[1]   pending LIST
-- KEYS[2]   scheduled ZSET
-- KEYS[3]   stats HASH
-- KEYS[3+i] job HASH of the i-th job
-- ARGV[1]   notify channel
-- ARGV[2+(i-1)*6 .. 7+(i-1)*6]  for the i-th job:
--           id, task, payload (JSON text), max_attempts, timeout_ms, delay_ms
--
-- A job whose HASH already exists (same id: an idempotency key used twice)
-- is left alone. Returns one integer per job: 1 created, 0 already existed.
--
-- Cost per job is what bounds throughput (Redis runs every script on one
-- core): the ready ids go to pending in one LPUSH per batch, and `now` is
-- passed as text, since Redis 7.0 formats every Lua number argument with
-- %.17g (glibc's float printing, ~9% of Redis' CPU under load).

local now_n = now_ms()
local now = tostring(now_n)
local created = {}
local ready = {}
local submitted = 0
for i = 1, #KEYS - 3 do
  local key = KEYS[3 + i]
  local a = 2 + (i - 1) * 6
  if redis.call('EXISTS', key) == 1 then
    created[i] = 0
  else
    local id = ARGV[a]
    if ARGV[a + 5] ~= '0' then
      local run_at = string.format('%d', now_n + tonumber(ARGV[a + 5]))
      redis.call('HSET', key, 'task', ARGV[a + 1], 'payload', ARGV[a + 2], 'state', 'scheduled',
        'max_attempts', ARGV[a + 3], 'timeout_ms', ARGV[a + 4], 'created_ms', now, 'run_at_ms', run_at)
      redis.call('ZADD', KEYS[2], run_at, id)
    else
      redis.call('HSET', key, 'task', ARGV[a + 1], 'payload', ARGV[a + 2], 'state', 'pending',
        'max_attempts', ARGV[a + 3], 'timeout_ms', ARGV[a + 4], 'created_ms', now)
      ready[#ready + 1] = id
    end
    submitted = submitted + 1
    created[i] = 1
  end
end
-- unpack is bounded by Lua's C stack (about 8,000 values): push in slices.
for s = 1, #ready, 1000 do
  redis.call('LPUSH', KEYS[1], unpack(ready, s, math.min(s + 999, #ready)))
end
if submitted > 0 then redis.call('HINCRBY', KEYS[3], 'submitted', submitted) end
if #ready > 0 then redis.call('PUBLISH', ARGV[1], #ready) end
return created
