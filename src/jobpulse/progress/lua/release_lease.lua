-- release_lease.lua: delete a worker's lease on a job, only if it still holds it.
--
-- KEYS[1]  the lease key
-- ARGV[1]  the holder's token
--
-- Returns 1 if the lease was released, 0 if another holder (or nobody) has it.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
