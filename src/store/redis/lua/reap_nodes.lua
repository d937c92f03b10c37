-- reap_dead_nodes: take the nodes whose last heartbeat is before the cutoff out of the
-- membership, in one step, so two survivors reaping at once reap each node once.
-- KEYS: 1 nodes, 2 beats
-- ARGV: 1 cutoff (µs)
-- Returns the ids reaped. The caller then frees their instance slots (they live in one
-- set per job, which a script must not SCAN for) and only then ends their leases
-- (recover_owner.lua): a job whose lease ended before its slot was freed could be
-- taken by another node and refused by max_instances, and a one-off job refused is
-- gone.
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[1], id)
end
return dead
