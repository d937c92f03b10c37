-- heartbeat: renew a registered node's heartbeat; a node reaped meanwhile is not
-- brought back (it must register again, knowing its leases are gone).
-- KEYS: 1 nodes, 2 beats
-- ARGV: 1 node id, 2 now (µs, the node's clock), 3 optionally the node's registration
--       JSON with its latest stats, which replaces the stored one
-- Returns 1, or 0 if the node is not registered.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[3] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
