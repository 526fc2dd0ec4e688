-- S5: a Patient + Observation transaction; Observation.subject points at the Patient's urn:uuid.
-- Every request gets fresh urn:uuids and a different name, so no two bundles are identical.
local common = require "common"

setup = common.setup
done = common.done

local headers = common.headers({ ["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json" })
local families = { "Smith", "Jones", "Garcia", "Nguyen", "Okafor", "Rossi", "Tanaka", "Silva" }
local givens = { "Ana", "Ben", "Eva", "Hiro", "Ines", "Jonas", "Kemi", "Liam" }

local function uuid4()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    math.random(0, 0xffffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    0x8000 + math.random(0, 0x3fff), math.random(0, 0xffff), math.random(0, 0xffffffff))
end

function init(args)
  common.seed(5)
end

function request()
  local pat = "urn:uuid:" .. uuid4()
  local body = '{"resourceType":"Bundle","type":"transaction","entry":['
    .. '{"fullUrl":"' .. pat .. '","resource":{"resourceType":"Patient",'
    .. '"identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"' .. math.random(100000000, 999999999) .. '"}],'
    .. '"name":[{"family":"' .. families[math.random(#families)] .. '","given":["' .. givens[math.random(#givens)] .. '"]}],'
    .. '"gender":"female","birthDate":"19' .. math.random(40, 99) .. '-0' .. math.random(1, 9) .. '-1' .. math.random(0, 9) .. '"},'
    .. '"request":{"method":"POST","url":"Patient"}},'
    .. '{"fullUrl":"urn:uuid:' .. uuid4() .. '","resource":{"resourceType":"Observation","status":"final",'
    .. '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},'
    .. '"subject":{"reference":"' .. pat .. '"},"effectiveDateTime":"2024-05-0' .. math.random(1, 9) .. 'T10:00:00Z",'
    .. '"valueQuantity":{"value":' .. math.random(50, 120) .. ',"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},'
    .. '"request":{"method":"POST","url":"Observation"}}]}'
  return wrk.format("POST", "/fhir", headers, body)
end

function response(status, headers, body)
  common.record(status)
  if status == 200 then bench_units = bench_units + 1 end
end
