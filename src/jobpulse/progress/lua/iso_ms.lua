-- iso_ms.lua: iso_ms(ms), "2026-11-27T08:00:00.123Z" for a millisecond timestamp (UTC).
--
-- Redis Lua has no os.date: the date is computed from the day number with Howard Hinnant's
-- civil_from_days (http://howardhinnant.github.io/date_algorithms.html). Prepended to the scripts that
-- use it (jobpulse.progress.store); tests/test_progress_layout.py checks it against Python.

local function iso_ms(ms)
  local secs = math.floor(ms / 1000)
  local millis = ms - secs * 1000
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then
    year = year + 1
  end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
    math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60, millis)
end
