-- stop_waiting: end an owner's waiter of a job; another owner's is left as it is. A job
-- whose waiter is gone (ended here, or expired) leaves the set of jobs with one.
-- KEYS: 1 the job's waiter (wait:ID, a hash: owner, max), 2 the ids of the jobs with a
--       waiter
-- ARGV: 1 owner, 2 job id
-- Returns 1 if it ended the owner's waiter, else 0.
local holder = redis.call('HGET', KEYS[1], 'owner')
local ended = 0
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  holder = false
  ended = 1
end
if not holder then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return ended
