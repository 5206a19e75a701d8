-- write_progress.lua: apply one progress write atomically, or drop it. (iso_ms.lua is prepended.)
--
-- KEYS[1]  the progress record: one string of 15 parts separated by "\31" (jobpulse.progress.layout):
--          version, owner, updated_at ms, state, the 10 content parts (kind .. eta_seconds, each the
--          JSON its body shows), updated_at as ISO-8601. A hash left by jobpulse < 0.6 is read for its
--          state, percent and version, and replaced by an accepted write.
-- ARGV[1]  the new state
-- ARGV[2]  the states a record may be in for this write to apply, space-separated
--          (computed by jobpulse.states.allowed_sources; the rules live in Python, once)
-- ARGV[3]  mode: "create" (only if no record exists) or "upsert" (create or update)
-- ARGV[4]  "1" if the new state is terminal, else "0"
-- ARGV[5]  TTL in ms while active; ARGV[6] TTL in ms once terminal
-- ARGV[7]  channel on which an accepted record's wire body is PUBLISHed, with "poll_after_ms": null
--          (the bytes a poll answers, but for that hint: what a stream's event sends)
-- ARGV[8]  owner; ARGV[9] the new percent ("" for none); ARGV[10] the new content, rendered by Python;
-- ARGV[11] the job id as JSON
--
-- Returns {status, version, state}: status 1 accepted, 0 duplicate (nothing changed; the TTL is
-- refreshed), -1 illegal transition, -2 percent would decrease within the state, -3 record exists
-- (create mode). version and state are the record's after the call.

local key = KEYS[1]
local state, mode, owner, percent, content = ARGV[1], ARGV[3], ARGV[8], ARGV[9], ARGV[10]
local SEP = '\31'

local function split(value)
  local parts, start = {}, 1
  while true do
    local stop = string.find(value, SEP, start, true)
    if not stop then
      parts[#parts + 1] = string.sub(value, start)
      return parts
    end
    parts[#parts + 1] = string.sub(value, start, stop - 1)
    start = stop + 1
  end
end

local cur_version, cur_owner, cur_state, cur_percent, cur_content = 0, nil, nil, nil, nil
local stored = redis.call('TYPE', key)['ok']
if stored == 'string' then
  local parts = split(redis.call('GET', key))
  cur_version, cur_owner, cur_state = tonumber(parts[1]), parts[2], parts[4]
  cur_percent = tonumber(parts[7])  -- nil for null
  cur_content = table.concat(parts, SEP, 5, 14)
elseif stored == 'hash' then
  local old = redis.call('HMGET', key, 'state', 'percent', 'version')
  cur_state, cur_percent, cur_version = old[1], tonumber(old[2]), tonumber(old[3]) or 0
end

if cur_state then
  if mode == 'create' then
    return {-3, cur_version, cur_state}
  end
  if not string.find(' ' .. ARGV[2] .. ' ', ' ' .. cur_state .. ' ', 1, true) then
    return {-1, cur_version, cur_state}
  end
  if percent ~= '' and cur_state == state and cur_percent and tonumber(percent) < cur_percent then
    return {-2, cur_version, cur_state}
  end
end

local ttl = ARGV[5]
if ARGV[4] == '1' then
  ttl = ARGV[6]
end

if cur_content == content and cur_state == state and cur_owner == owner then
  redis.call('PEXPIRE', key, ttl)
  return {0, cur_version, cur_state}
end

local now = redis.call('TIME')
local ms = string.format('%.0f', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
local version = string.format('%d', cur_version + 1)
local iso = iso_ms(tonumber(ms))
redis.call('SET', key, table.concat({version, owner, ms, state, content, iso}, SEP), 'PX', ttl)

-- The body as layout.render builds it for a poll: the keys of record.progress_body, in its order.
local NAMES = {'kind', 'terminal', 'percent', 'current', 'total', 'stage', 'message', 'error_reason',
  'details', 'eta_seconds'}
local values = split(content)
local body = {'{"id":', ARGV[11], ',"kind":', values[1], ',"state":"', state, '"'}
for i = 2, #NAMES do
  body[#body + 1] = ',"' .. NAMES[i] .. '":' .. values[i]
end
body[#body + 1] = ',"updated_at":"' .. iso .. '","version":' .. version .. ',"poll_after_ms":null}'
redis.call('PUBLISH', ARGV[7], table.concat(body))
return {1, cur_version + 1, state}
