-- renew_lease.lua: extend a worker's lease on a job, only if it still holds it.
--
-- KEYS[1]  the lease key
-- ARGV[1]  the holder's token
-- ARGV[2]  the new TTL in ms
--
-- Returns 1 if the lease was extended, 0 if another holder (or nobody) has it.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
