-- wrk: a unique Idempotency-Key on every request (bench/run.sh scenario `createkey`, through
-- scenario.sh's WRK_LUA). Each wrk thread has its own Lua state; setup() numbers the threads
-- and stamps the run, so keys never repeat across threads or runs against one server.
local threads = 0
local stamp = os.time()
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread:set("stamp", stamp)
end
local n = 0
request = function()
  n = n + 1
  wrk.headers["Idempotency-Key"] = string.format("bench-%d-%d-%d", stamp, tid, n)
  return wrk.format()
end
