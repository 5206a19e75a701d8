-- write_progress.lua: apply one progress write atomically, or drop it.
--
-- KEYS[1]  the progress record (a hash)
-- ARGV[1]  the new state
-- ARGV[2]  the states a record may be in for this write to apply, space-separated
--          (computed by jobpulse.states.allowed_sources; the rules live in Python, once)
-- ARGV[3]  mode: "create" (only if no record exists) or "upsert" (create or update)
-- ARGV[4]  "1" if the new state is terminal, else "0"
-- ARGV[5]  TTL in ms while active; ARGV[6] TTL in ms once terminal
-- ARGV[7]  channel on which an accepted record is PUBLISHed
-- ARGV[8..] field/value pairs; an empty value removes the field (null on the wire)
--
-- Returns {status, version, state}: status 1 accepted, 0 duplicate (nothing changed), -1 illegal
-- transition, -2 percent would decrease within the state, -3 record exists (create mode).
-- version and state are the record's after the call.

local key = KEYS[1]
local state = ARGV[1]
local mode = ARGV[3]

local names = {'state', 'percent', 'version'}
for i = 8, #ARGV, 2 do
  names[#names + 1] = ARGV[i]
end
local cur = redis.call('HMGET', key, unpack(names))
local cur_state, cur_percent, cur_version = cur[1], cur[2], tonumber(cur[3]) or 0

if cur_state then
  if mode == 'create' then
    return {-3, cur_version, cur_state}
  end
  if not string.find(' ' .. ARGV[2] .. ' ', ' ' .. cur_state .. ' ', 1, true) then
    return {-1, cur_version, cur_state}
  end
end

local changed = cur_state ~= state
local sets = {'state', state}
local dels = {}
for i = 8, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local old = cur[(i - 8) / 2 + 4]
  if value == '' then
    if old then
      dels[#dels + 1] = field
      changed = true
    end
  else
    if field == 'percent' and cur_state == state and cur_percent
        and tonumber(value) < tonumber(cur_percent) then
      return {-2, cur_version, cur_state}
    end
    if old ~= value then
      sets[#sets + 1] = field
      sets[#sets + 1] = value
      changed = true
    end
  end
end

local ttl = ARGV[5]
if ARGV[4] == '1' then
  ttl = ARGV[6]
end

if not changed then
  redis.call('PEXPIRE', key, ttl)
  return {0, cur_version, cur_state}
end

local now = redis.call('TIME')
sets[#sets + 1] = 'updated_at'
sets[#sets + 1] = tostring(now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('HSET', key, unpack(sets))
if #dels > 0 then
  redis.call('HDEL', key, unpack(dels))
end
local version = redis.call('HINCRBY', key, 'version', 1)
redis.call('PEXPIRE', key, ttl)

local flat = redis.call('HGETALL', key)
local record = {}
for i = 1, #flat, 2 do
  record[flat[i]] = flat[i + 1]
end
record['owner'] = nil
redis.call('PUBLISH', ARGV[7], cjson.encode(record))
return {1, version, state}
