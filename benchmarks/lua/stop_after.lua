-- Stop after WRK_STOP_AFTER responses (run with -t1 so the count is global).
local limit = tonumber(os.getenv("WRK_STOP_AFTER") or "1000")
local count = 0
response = function(status, headers, body)
  count = count + 1
  if count >= limit then
    wrk.thread:stop()
  end
end
