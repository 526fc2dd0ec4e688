-- S1: CRUD mix over Patient, Organization, Practitioner, Encounter, Observation, MedicationRequest.
-- Args: 1 = bodies file ("Type<TAB>json" lines, no id), 2 = seed ids file ("Type id" lines).
--
-- Mix per request: 25% POST, 40% GET, 25% PUT, 10% DELETE, the type chosen uniformly.
-- Id tracking: responses arrive in any order over the connections of a thread, so the script never
-- pairs a response with its request. Instead ids are *leased*: a GET or PUT takes an id out of the pool
-- and the id goes back when its 200 response (whose body carries resourceType and id) arrives; a
-- DELETE takes an id out for good; a 201 adds the id from the Location header. So no request can hit an
-- id that a concurrent DELETE removed, and every non-2xx response is a real server answer, not a race
-- of the load generator. Ids of failed requests are dropped from the pool.
local common = require "common"

setup = common.setup
done = common.done

local types = { "Patient", "Organization", "Practitioner", "Encounter", "Observation", "MedicationRequest" }
local bodies = {}   -- type -> list of JSON bodies without id
local pool = {}     -- type -> list of ids currently free to use
local write_headers = common.headers({ ["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json" })
local read_headers = common.headers({ ["Accept"] = "application/fhir+json" })

function init(args)
  common.seed(1)
  for _, t in ipairs(types) do bodies[t] = {}; pool[t] = {} end
  for _, line in ipairs(common.read_lines(args[1])) do
    local t, json = line:match("^(%a+)\t(.*)$")
    table.insert(bodies[t], json)
  end
  -- Seed ids are split between threads, so two threads never lease the same id.
  local nthreads = tonumber(args[3] or "1")
  for i, line in ipairs(common.read_lines(args[2])) do
    if (i % nthreads) + 1 == (thread_index or 1) then
      local t, id = line:match("^(%S+)%s+(%S+)$")
      if pool[t] then table.insert(pool[t], id) end
    end
  end
end

-- Remove and return a random id of type t (swap with the last element, then pop).
local function take(t)
  local p = pool[t]
  local n = #p
  if n == 0 then return nil end
  local i = math.random(n)
  local id = p[i]
  p[i] = p[n]
  p[n] = nil
  return id
end

local function give(t, id)
  if pool[t] then table.insert(pool[t], id) end
end

function request()
  local t = types[math.random(#types)]
  local roll = math.random(100)
  if roll > 25 then
    local id = take(t)
    if id then
      local path = "/fhir/" .. t .. "/" .. id
      if roll <= 65 then
        common.count_kind("GET")
        return wrk.format("GET", path, read_headers)
      elseif roll <= 90 then
        common.count_kind("PUT")
        local b = bodies[t]
        local body = '{"id":"' .. id .. '",' .. b[math.random(#b)]:sub(2)
        return wrk.format("PUT", path, write_headers, body)
      else
        common.count_kind("DELETE")
        return wrk.format("DELETE", path, read_headers)
      end
    end
    -- Pool of this type empty: fall through to a create.
  end
  common.count_kind("POST")
  local b = bodies[t]
  return wrk.format("POST", "/fhir/" .. t, write_headers, b[math.random(#b)])
end

function response(status, headers, body)
  common.record(status)
  if status == 201 then
    local loc = headers["Location"] or headers["location"]
    if loc then
      local t, id = loc:match("/fhir/(%a+)/([^/]+)/_history/")
      if t then give(t, id); return end
    end
  end
  if (status == 200 or status == 201) and body and #body > 0 then
    -- GET or PUT answer: the resource itself; give its id back to the pool.
    local t = body:match('"resourceType":"(%a+)"')
    local id = body:match('"id":"([^"]+)"')
    if t and id then give(t, id) end
  end
end
