-- wrk script: EMAIL_OPEN deliveries for the leads bench/webhooks.py seeds, each with its own
-- stats_id. A cross-check of bench/webhooks.py's Python load generator with a load generator
-- that costs the server's 2 cores far less CPU. Usage (a server started by bench/webhooks.py
-- --keep-db, or by hand on that database, with SMARTLEAD_WEBHOOK_SECRET=bench-webhook-secret):
--   wrk -t2 -c16 -d10s -s bench/webhooks_wrk.lua http://127.0.0.1:8765/
threads = 0
counter = 0

setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

init = function(args)
  math.randomseed(os.time() * 100 + tid)
end

request = function()
  counter = counter + 1
  local lead = math.random(1, 20000)
  local campaign = 900000 + 1 + lead % 40
  local body = string.format(
    '{"event_type":"EMAIL_OPEN","campaign_id":%d,"to_email":"lead%d@bench.test",' ..
    '"sequence_number":1,"stats_id":"t%d-%d-%d","event_timestamp":"2026-11-25T10:00:00+00:00"}',
    campaign, lead, tid, counter, math.random(0, 0x7fffffff))
  return wrk.format("POST", "/webhooks/smartlead?secret=bench-webhook-secret",
    {["Content-Type"] = "application/json", ["X-Forwarded-Proto"] = "https"}, body)
end
