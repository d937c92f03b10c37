-- take_orphans: hand one job's orphaned runs (slots whose owner died while they stood
-- for run times nothing else remembers) to a live node, atomically, so two nodes
-- taking at once take each orphan once. The slots keep counting throughout.
-- KEYS: 1 the job's instance set, 2 the orphans set
-- ARGV: 1 owner, 2 the slots' new expiry (µs), 3 key TTL (ms), 4 job id
-- Returns the members now held by the owner (owner .. "\31" .. nonce .. "\31" .. times).
local taken = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, 1) == '\31' then
    local mine = ARGV[1] .. member
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZADD', KEYS[1], ARGV[2], mine)
    table.insert(taken, mine)
  end
end
if #taken > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
redis.call('SREM', KEYS[2], ARGV[4])
return taken
