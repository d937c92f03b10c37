-- renew: extend what an owner holds for runs still going: its leases on the given
-- jobs (if nobody took them over) and its instance slots of those jobs.
-- KEYS: 1 due, 2 leases, 3 owners, then one instance set per job (in ARGV's order)
-- ARGV: 1 owner, 2 lease expiry (µs), 3 slot expiry (µs), 4 key TTL (ms),
--       5 owner .. "\31" (the slot member prefix), then the job ids
-- Returns how many leases and slots were renewed.
local renewed = 0
local mine = ARGV[5]
for index = 6, #ARGV do
  local id = ARGV[index]
  if redis.call('HGET', KEYS[3], id) == ARGV[1] then
    -- A lease that ran out was put back among the due jobs by the next acquisition;
    -- still held (nobody took the job), it is hidden again.
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    renewed = renewed + 1
  end
  local slots = KEYS[index - 2]
  for _, member in ipairs(redis.call('ZRANGE', slots, 0, -1)) do
    if string.sub(member, 1, #mine) == mine then
      redis.call('ZADD', slots, ARGV[3], member)
      renewed = renewed + 1
    end
  end
  if redis.call('EXISTS', slots) == 1 then
    redis.call('PEXPIRE', slots, ARGV[4])
  end
end
return renewed
