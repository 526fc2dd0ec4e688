-- Framework ceiling: GET /bench/ping, a trivial Django JSON view behind the same middleware and server.
local common = require "common"
local req

setup = common.setup
done = common.done

function init(args)
  req = wrk.format("GET", "/bench/ping", { ["Accept"] = "application/json" })
end

function request()
  return req
end

function response(status, headers, body)
  common.record(status)
end
