-- orphan_slots: turn a dead owner's slots that stand for run times into orphaned runs
-- (take_orphans.lua), atomically per job: still counted, never expiring, and the job
-- listed in the orphans set. A slot whose times the job still shows (its next run time
-- is at or before the earliest: the owner died before writing the job back) is freed
-- instead, and the job runs them (store::times_still_due).
-- KEYS: 1 the job's instance set, 2 the orphans set, 3 next
-- ARGV: 1 job id, then per slot: its member (owner .. "\31" .. nonce .. "\31" .. times)
--       and its earliest run time (µs)
-- Returns how many were orphaned or freed.
local next = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '')
local orphaned, freed = 0, 0
for index = 2, #ARGV, 2 do
  local member, earliest = ARGV[index], tonumber(ARGV[index + 1])
  if redis.call('ZREM', KEYS[1], member) == 1 then
    if next and earliest and next <= earliest then
      freed = freed + 1
    else
      local rest = string.match(member, '^[^\31]*(\31.*)$')
      redis.call('ZADD', KEYS[1], 'inf', rest)
      orphaned = orphaned + 1
    end
  end
end
if orphaned > 0 then
  redis.call('PERSIST', KEYS[1])
  redis.call('SADD', KEYS[2], ARGV[1])
end
return orphaned + freed
