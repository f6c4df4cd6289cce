-- Replays requests signed beforehand, in turn, and counts every answer that is not a 200.
--
-- Usage: wrk ... -s bench/wrk_replay.lua URL -- REQUESTS_FILE
-- REQUESTS_FILE is Lua source returning a list of {method, path, headers, body} tables
-- (written by bench/api_latency.py). At the end one line is printed:
--   BENCH-RESULT requests=.. duration_us=.. bytes=.. non200=.. connect=.. read=.. write=..
--   status=.. timeout=.. p50_us=.. p90_us=.. p99_us=.. max_us=..

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local prepared = {}
local next_index = 1
non200 = 0

function init(args)
   local specs = dofile(args[1])
   for i, spec in ipairs(specs) do
      prepared[i] = wrk.format(spec[1], spec[2], spec[3], spec[4])
   end
   if #prepared == 0 then
      error("no requests in " .. args[1])
   end
end

function request()
   local req = prepared[next_index]
   next_index = next_index % #prepared + 1
   return req
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("non200")
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH-RESULT requests=%d duration_us=%d bytes=%d non200=%d connect=%d read=%d "
         .. "write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, bad, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
