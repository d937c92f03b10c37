-- remove_job: drop a job from every structure at once.
-- KEYS: 1 jobs, 2 revs, 3 next, 4 due, 5 leases, 6 owners, 7 broken, 8 sched,
--       9 leasesched
-- ARGV: 1 id
-- Returns 1, or 0 if there was no such job. Instance slots stay: runs still going free
-- them, and a job added again under the id must not run beside them past its limit.
local id = ARGV[1]
if redis.call('HDEL', KEYS[1], id) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('HDEL', KEYS[6], id)
redis.call('SREM', KEYS[7], id)
redis.call('HDEL', KEYS[8], id)
redis.call('HDEL', KEYS[9], id)
return 1
