-- Each request connects a store no one has connected before.
local counter = 0
local run = os.time()
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- thread_id is a global set by setup() in each thread.
function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Bench %d","type":"woocommerce","domain":"r%d-t%d-n%d.bench.example"}',
    counter, run, thread_id, counter)
  return wrk.format(nil, nil, nil, body)
end
