-- claim_instances: take one of each job's `max_instances` slots, cluster-wide, for a
-- batch of claims in order, in one round trip (a single claim is a batch of one).
-- A slot whose owner died without releasing it stops counting once its expiry passed;
-- a set nobody claims from again expires with its last slot (PEXPIRE).
-- KEYS: one instance set per claim (a job claimed twice appears twice)
-- ARGV: 1 now (µs), 2 the slots' expiry (µs), 3 key TTL (ms), then per claim:
--       max_instances, member
-- Returns one 1 (claimed) or 0 (limit reached) per claim.
local claimed = {}
for index, key in ipairs(KEYS) do
  local max_instances = tonumber(ARGV[2 + 2 * index])
  local member = ARGV[3 + 2 * index]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) >= max_instances then
    claimed[index] = 0
  else
    redis.call('ZADD', key, ARGV[2], member)
    redis.call('PEXPIRE', key, ARGV[3])
    claimed[index] = 1
  end
end
return claimed
