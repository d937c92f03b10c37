-- claim_instances: take one of each job's `max_instances` slots, cluster-wide, for a
-- batch of claims in order, in one round trip (a single claim is a batch of one).
-- A slot whose owner died without releasing it stops counting once its expiry passed;
-- a set nobody claims from again expires with its last slot (PEXPIRE). A claim of a job
-- that queues its runs also reads the job's waiter: another owner's, under a limit as
-- high as the claim's, keeps one slot.
-- KEYS: per claim, its job's instance set (a job claimed twice appears twice), then
--       its job's waiter (wait:ID) if the claim queues
-- ARGV: 1 now (µs), 2 the slots' expiry (µs), 3 key TTL (ms), 4 owner, then per
--       claim: max_instances, member, queues (1 or 0)
-- Returns one 1 (claimed) or 0 (limit reached) per claim.
local claimed = {}
local key = 0
for index = 1, (#ARGV - 4) / 3 do
  local base = 2 + 3 * index
  local limit = tonumber(ARGV[base])
  local member = ARGV[base + 1]
  key = key + 1
  local slots = KEYS[key]
  if ARGV[base + 2] == '1' then
    key = key + 1
    local waiter = redis.call('HMGET', KEYS[key], 'owner', 'max')
    if waiter[1] and waiter[1] ~= ARGV[4] and tonumber(waiter[2]) >= limit then
      limit = limit - 1
    end
  end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', ARGV[1])
  if redis.call('ZCARD', slots) >= limit then
    claimed[index] = 0
  else
    redis.call('ZADD', slots, ARGV[2], member)
    redis.call('PEXPIRE', slots, ARGV[3])
    claimed[index] = 1
  end
end
return claimed
