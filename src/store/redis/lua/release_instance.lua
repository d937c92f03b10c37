-- release_instance: free one slot this owner holds, its oldest (runs of one job on one
-- scheduler mostly finish in the order they started).
-- KEYS: 1 the job's instance set
-- ARGV: 1 owner .. "\31" (the separator keeps "node1" from matching "node10")
-- Returns 1 if a slot was freed, 0 if the owner held none.
local mine = ARGV[1]
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #mine) == mine then
    redis.call('ZREM', KEYS[1], member)
    return 1
  end
end
return 0
