-- Signed Shopify order deliveries, prepared by run.py (one per line:
-- integration id, shop domain, signature, body), each sent with a new webhook id.
local deliveries = {}
local counter = 0
local run = os.time()
local threads = {}

for line in io.lines(os.getenv("WEBHOOK_DELIVERIES")) do
  local id, domain, signature, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
  table.insert(deliveries, {id = id, domain = domain, signature = signature, body = body})
end

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

-- thread_id is a global set by setup() in each thread.
function request()
  counter = counter + 1
  local d = deliveries[(counter % #deliveries) + 1]
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "orders/updated",
    ["X-Shopify-Hmac-Sha256"] = d.signature,
    ["X-Shopify-Shop-Domain"] = d.domain,
    ["X-Shopify-Webhook-Id"] = string.format("bench-%d-%d-%d", run, thread_id, counter),
    ["X-Shopify-API-Version"] = "2025-01",
  }
  return wrk.format("POST", "/api/webhooks/order?id=" .. d.id, headers, d.body)
end
