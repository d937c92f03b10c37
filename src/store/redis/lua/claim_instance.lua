-- claim_instance: take one of a job's `max_instances` slots, cluster-wide.
-- KEYS: 1 the job's instance set (member = owner .. "\31" .. nonce, score = slot expiry µs)
-- ARGV: 1 now (µs), 2 this slot's expiry (µs), 3 max_instances, 4 member, 5 key TTL (ms)
-- Returns 1 if claimed, 0 if the limit is reached. A slot whose owner died without
-- releasing it stops counting once its expiry has passed.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
-- Housekeeping only: a set nobody claims from again disappears with its last slot.
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
