-- wrk script for benchmarks/bench_predict.py: POST bodies that cycle over user ids, then one
-- machine-readable summary line. Arguments (after `--`): path, body kind ("predict" or
-- "invocations"), k, number of known users, number of unknown users.
-- Requests are pre-built in init(): building one per request would load the client.

local requests = {}
local next_index = 1

local function body(kind, user, k)
  local record = string.format('{"user_id":"%s","k":%d}', user, k)
  if kind == "invocations" then
    return '{"dataframe_records":[' .. record .. ']}'
  end
  return record
end

function init(args)
  local path, kind = args[1], args[2]
  local k, known, unknown = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  local headers = { ["Content-Type"] = "application/json" }
  -- every 10th request is for a user the model has never seen (popularity answer)
  for i = 0, known + unknown - 1 do
    local user
    if i % 10 == 9 and unknown > 0 then
      user = string.format("x%05d", i % unknown)
    else
      user = string.format("u%04d", (i * 7919) % known)
    end
    requests[#requests + 1] = wrk.format("POST", path, headers, body(kind, user, k))
  end
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,'
      .. '"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
