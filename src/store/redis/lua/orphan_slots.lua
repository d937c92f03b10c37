-- orphan_slots: turn a dead owner's slots that stand for run times into orphaned runs
-- (take_orphans.lua), atomically per job: still counted, never expiring, and the job
-- listed in the orphans set.
-- KEYS: 1 the job's instance set, 2 the orphans set
-- ARGV: 1 job id, then the members to orphan (owner .. "\31" .. nonce .. "\31" .. times)
-- Returns how many were orphaned.
local orphaned = 0
for index = 2, #ARGV do
  local member = ARGV[index]
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local rest = string.match(member, '^[^\31]*(\31.*)$')
    redis.call('ZADD', KEYS[1], 'inf', rest)
    orphaned = orphaned + 1
  end
end
if orphaned > 0 then
  redis.call('PERSIST', KEYS[1])
  redis.call('SADD', KEYS[2], ARGV[1])
end
return orphaned
