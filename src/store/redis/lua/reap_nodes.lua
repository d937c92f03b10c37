-- reap_dead_nodes: take the nodes whose last heartbeat is before the cutoff out of the
-- membership and end their leases (their jobs are due again at their next run times),
-- all in one step, so two survivors reaping at once reap each node once.
-- KEYS: 1 nodes, 2 beats, 3 next, 4 due, 5 leases, 6 owners
-- ARGV: 1 cutoff (µs)
-- Returns the ids reaped. Their instance slots are freed by the caller (they live in
-- one set per job, which a script must not SCAN for).
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
if #dead == 0 then
  return {}
end
local reaped = {}
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[1], id)
  reaped[id] = true
end
local owners = redis.call('HGETALL', KEYS[6])
for index = 1, #owners, 2 do
  local id, owner = owners[index], owners[index + 1]
  if reaped[owner] then
    redis.call('ZREM', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    local next = redis.call('HGET', KEYS[3], id)
    if next then
      redis.call('ZADD', KEYS[4], next, id)
    end
  end
end
return dead
