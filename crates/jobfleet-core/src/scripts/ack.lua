-- ack.lua: complete jobs a worker holds (one call for a batch of acks).
--
-- KEYS[1]  processing LIST of this worker
-- KEYS[2]  stats HASH
-- ARGV[1]  worker id
-- ARGV[2]  job key prefix
-- ARGV[3]  events channel
-- ARGV[4]  queue name
-- ARGV[5]  retention of completed records, seconds (0: delete at once); a
--          record's own `key_ttl_s`, when longer, wins
-- ARGV[6+(i-1)*2], ARGV[7+(i-1)*2]  for the i-th job: id, result (JSON text)
--
-- The fence: an id no longer in this worker's processing list (recovered and
-- handed to another worker, or already acked) is refused, never applied.
-- Returns one integer per job: 1 completed, 0 refused.
--
-- Per job: LREM, HMGET, HSET, EXPIRE (HDEL only when a cancel flag is there).
-- The event costs about as much again, so it is built only when someone is
-- subscribed; its queue and worker are encoded once per batch, and no Lua
-- number is formatted per job except the duration (as an integer, never
-- negative even when Redis' clock stepped back since the claim).

-- On a Cluster, every job must be here before anything is written: while
-- a slot migrates, one already moved makes the whole call a TRYAGAIN (the
-- client waits and sends it again, to the new owner once the slot moved).
if CLUSTER then
  for i = 6, #ARGV, 2 do
    if not here(ARGV[2] .. ARGV[i], ARGV[2]) then
      return redis.error_reply('TRYAGAIN jobfleet: job ' .. ARGV[i] .. ' is moving to another node')
    end
  end
end
local now_n = now_ms()
local now = tostring(now_n)
local queue_json = cjson.encode(ARGV[4])
local worker_json = cjson.encode(ARGV[1])
local task_json = {}
-- Events are fire-and-forget: with nobody subscribed to this queue's events
-- (or to any pattern), building and publishing them is skipped. On a Cluster
-- the count is of the sharded subscribers on this node, the shard's primary,
-- where the jobfleet client subscribes (a subscriber on a replica is not
-- seen, as a plain subscriber on a replica is not outside a Cluster).
local listened
if CLUSTER then
  listened = redis.call('PUBSUB', 'SHARDNUMSUB', ARGV[3])[2] > 0
else
  listened = redis.call('PUBSUB', 'NUMSUB', ARGV[3])[2] > 0 or redis.call('PUBSUB', 'NUMPAT') > 0
end
local out = {}
local done = 0
for i = 6, #ARGV, 2 do
  local id, result = ARGV[i], ARGV[i + 1]
  if redis.call('LREM', KEYS[1], -1, id) == 0 then
    out[#out + 1] = 0
  else
    local key = ARGV[2] .. id
    local f = redis.call('HMGET', key, 'task', 'attempts', 'started_ms', 'cancel', 'key_ttl_s', 'batch')
    local keep = ARGV[5]
    if f[5] and (tonumber(f[5]) or 0) > tonumber(keep) then keep = f[5] end
    if keep ~= '0' then
      redis.call('HSET', key, 'state', 'completed', 'result', result, 'finished_ms', now)
      if f[4] then redis.call('HDEL', key, 'cancel') end
      redis.call('EXPIRE', key, keep)
    else
      redis.call('DEL', key)
    end
    if listened then
      local task = f[1] or ''
      local tj = task_json[task]
      if not tj then
        tj = cjson.encode(task)
        task_json[task] = tj
      end
      local attempt = f[2]
      if not (attempt and string.find(attempt, '^%d+$')) then attempt = '0' end
      local duration = string.format('%d', since(now_n, f[3]))
      redis.call(PUBLISH, ARGV[3], '{"id":' .. cjson.encode(id) .. ',"queue":' .. queue_json ..
        ',"task":' .. tj .. ',"state":"completed","attempt":' .. attempt .. ',"worker":' .. worker_json ..
        ',"ms":' .. now .. ',"duration_ms":' .. duration .. ',"result":' .. result .. '}')
    end
    if f[6] then batch_done(string.sub(ARGV[2], 1, -5), f[6], 'completed', now) end
    done = done + 1
    out[#out + 1] = 1
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[2], 'completed', done) end
return out
