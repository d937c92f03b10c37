-- After acquire_due_jobs: set aside jobs whose stored form could not be read, so they
-- are not acquired again and again; they stay in the jobs hash for an operator to see,
-- and replace_job/update_job (valid JSON) or remove_job takes them out of quarantine.
-- KEYS: 1 revs, 2 next, 3 due, 4 leases, 5 owners, 6 broken
-- ARGV: 1 owner, then two per job: id, the revision that was read
for i = 2, #ARGV, 2 do
  local id, revision = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[5], id) == ARGV[1] then
    redis.call('ZREM', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
    if redis.call('HGET', KEYS[1], id) == revision then
      redis.call('SADD', KEYS[6], id)
    else
      -- Rewritten since it was read: the new version gets its chance.
      local next = redis.call('HGET', KEYS[2], id)
      if next then
        redis.call('ZADD', KEYS[3], next, id)
      end
    end
  end
end
return 0
