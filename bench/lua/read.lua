-- S2: GET /fhir/Patient/{id} over random existing ids. Arg 1: file of "Type id" lines.
local common = require "common"
local reqs = {}

setup = common.setup
done = common.done

function init(args)
  common.seed()
  for _, line in ipairs(common.read_lines(args[1])) do
    local rtype, id = line:match("^(%S+)%s+(%S+)$")
    -- Pre-formatted requests: the load generator spends no time building strings per request.
    table.insert(reqs, wrk.format("GET", "/fhir/" .. rtype .. "/" .. id, common.headers({ ["Accept"] = "application/fhir+json" })))
  end
  assert(#reqs > 0, "no ids in " .. args[1])
end

function request()
  return reqs[math.random(#reqs)]
end

function response(status, headers, body)
  common.record(status)
end
