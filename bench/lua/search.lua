-- S3 and S8: GET searches picked at random from a prepared list. Arg 1: file of request paths (one per
-- line, e.g. /fhir/Patient?name=John&_count=20); the driver repeats each query kind the same number of
-- times, so a uniform pick over lines is a uniform pick over kinds. Arg 2 (optional) "count": add the
-- entries of each 200 answer to bench_units (S8 reports resources streamed per second).
local common = require "common"
local reqs = {}
local count_entries = false

setup = common.setup
done = common.done

function init(args)
  common.seed()
  count_entries = args[2] == "count"
  for _, path in ipairs(common.read_lines(args[1])) do
    table.insert(reqs, wrk.format("GET", path, common.headers({ ["Accept"] = "application/fhir+json" })))
  end
  assert(#reqs > 0, "no queries in " .. args[1])
end

function request()
  return reqs[math.random(#reqs)]
end

function response(status, headers, body)
  common.record(status)
  if count_entries and status == 200 and body then
    -- Every entry of a searchset (matches, includes) has exactly one fullUrl.
    local _, entries = body:gsub('"fullUrl"', "")
    bench_units = bench_units + entries
  end
end
