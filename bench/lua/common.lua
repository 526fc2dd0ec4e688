-- Shared by every scenario script: per-thread counters, aggregation in done(), one JSON line out.
--
-- wrk runs one Lua state per thread plus one for setup()/done(). Counters are globals of the thread
-- states (thread:get() can only read globals), and done() adds them up and prints a line starting with
-- BENCHJSON that bench/driver.py parses. Percentiles come from wrk's own latency histogram.

local M = {}

local threads = {}

-- Globals read back by done() through thread:get().
bench_status = {}   -- HTTP status -> responses
bench_units = 0     -- scenario-defined unit count (resources created for S6)
bench_kinds = {}    -- request kind -> requests sent (S1: POST/GET/PUT/DELETE)

-- The server refuses anonymous calls: driver.py mints an Admin API token and hands it over here.
local auth = os.getenv("FHIR_BENCH_AUTH")

-- `headers` plus the Authorization header (wrk.format replaces wrk.headers rather than merging).
function M.headers(headers)
  if auth then headers["Authorization"] = auth end
  return headers
end

function M.setup(thread)
  -- Each thread gets an index and the thread count, so scripts can split shared input between them.
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

function M.count_kind(kind)
  bench_kinds[kind] = (bench_kinds[kind] or 0) + 1
end

-- Called from each script's response(); records the status. Errors are responses outside 2xx/3xx.
function M.record(status)
  bench_status[status] = (bench_status[status] or 0) + 1
end

function M.read_lines(path)
  local lines = {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 then table.insert(lines, line) end
  end
  f:close()
  return lines
end

function M.seed(extra)
  math.randomseed(os.time() * 1000 + (thread_index or 0) * 7919 + (extra or 0))
end

local function encode(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, string.format("%q:%s", tostring(k), encode(v)))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "number" then
    return string.format("%.17g", value)
  elseif kind == "boolean" then
    return tostring(value)
  else
    return string.format("%q", tostring(value))
  end
end

function M.done(summary, latency, requests)
  local status, kinds, units = {}, {}, 0
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("bench_status") or {}) do
      status[tostring(code)] = (status[tostring(code)] or 0) + n
    end
    for kind, n in pairs(thread:get("bench_kinds") or {}) do
      kinds[kind] = (kinds[kind] or 0) + n
    end
    units = units + (thread:get("bench_units") or 0)
  end
  local errors = 0
  for code, n in pairs(status) do
    local c = tonumber(code)
    if c < 200 or c >= 400 then errors = errors + n end
  end
  local out = {
    duration_us = summary.duration,
    responses = summary.requests,
    bytes = summary.bytes,
    socket_errors = {
      connect = summary.errors.connect,
      read = summary.errors.read,
      write = summary.errors.write,
      timeout = summary.errors.timeout,
    },
    status = status,
    http_errors = errors,
    kinds = kinds,
    units = units,
    latency_us = {
      p50 = latency:percentile(50),
      p95 = latency:percentile(95),
      p99 = latency:percentile(99),
      mean = latency.mean,
      max = latency.max,
    },
  }
  io.write("BENCHJSON " .. encode(out) .. "\n")
end

return M
