-- recover_owner: end the leases an earlier process with this owner id left behind; its
-- jobs are due again at their next run times (or stay idle if paused meanwhile).
-- KEYS: 1 next, 2 due, 3 leases, 4 owners
-- ARGV: 1 owner
-- Returns how many leases ended. Only the acquired jobs are read (the owners hash),
-- never the whole job set.
local ended = 0
local owners = redis.call('HGETALL', KEYS[4])
for index = 1, #owners, 2 do
  local id, owner = owners[index], owners[index + 1]
  if owner == ARGV[1] then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    local next = redis.call('HGET', KEYS[1], id)
    if next then
      redis.call('ZADD', KEYS[2], next, id)
    end
    ended = ended + 1
  end
end
return ended
