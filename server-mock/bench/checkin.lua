-- wrk script: fleet check-ins (POST /api/v1/devices/{id}/checkin) as the
-- devices that bench-server registered. See server-mock/bench/README.md.
--
--   wrk -t2 -c1000 -d10s --latency -s checkin.lua URL -- DEVICES BODY [count] [delay=MS]
--
-- DEVICES: one "device_id token" per line. BODY: the check-in body, sent
-- as is by every device. Each wrk thread cycles through all the devices,
-- starting at its own offset, so consecutive requests are different devices
-- with their own Bearer token. The requests are built once in init().
-- With "count", response() tallies the status codes and done() prints them
-- as one line "checkin-statuses: CODE=N ..." (costs wrk the header parsing,
-- so the bench uses it for the warm-up only; measured runs rely on wrk's
-- own "Non-2xx or 3xx responses" line).
-- With "delay=MS", each connection waits a random 0..2*MS ms (mean MS)
-- before each request: an offered load of about connections*1000/MS req/s
-- instead of wrk's closed loop. wrk starts a request's latency clock after
-- the delay, so the delay is not counted in the latency.

local threads = {}
local nthreads = 0

function setup(thread)
    thread:set("thread_index", nthreads)
    nthreads = nthreads + 1
    table.insert(threads, thread)
end

local function slurp(path)
    local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
    local s = f:read("*a")
    f:close()
    return s
end

function init(args)
    local body = slurp(args[2])
    local f = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
    reqs = {}
    for line in f:lines() do
        local id, token = line:match("^(%S+)%s+(%S+)%s*$")
        if id then
            reqs[#reqs + 1] = wrk.format("POST", "/api/v1/devices/" .. id .. "/checkin",
                {["Authorization"] = "Bearer " .. token,
                 ["Content-Type"] = "application/json"}, body)
        end
    end
    f:close()
    n = #reqs
    assert(n > 0, "no devices in " .. args[1])
    -- 4999 is prime: the threads start far apart whatever their number.
    i = (thread_index * 4999) % n
    statuses = {}
    local count = false
    mean_delay = nil
    for k = 3, #args do
        if args[k] == "count" then
            count = true
        elseif args[k]:match("^delay=") then
            mean_delay = assert(tonumber(args[k]:sub(7)), "bad " .. args[k])
        else
            error("unknown argument " .. args[k])
        end
    end
    if not count then
        response = nil
    end
    if mean_delay then
        math.randomseed(1000 + thread_index)
    else
        delay = nil
    end
end

function delay()
    return math.random() * 2 * mean_delay
end

function request()
    i = i + 1
    if i > n then
        i = 1
    end
    return reqs[i]
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    local any = false
    for _, t in ipairs(threads) do
        local s = t:get("statuses")
        if s then
            for code, count in pairs(s) do
                total[code] = (total[code] or 0) + count
                any = true
            end
        end
    end
    if any then
        local parts = {}
        for code, count in pairs(total) do
            parts[#parts + 1] = tostring(code) .. "=" .. tostring(count)
        end
        table.sort(parts)
        io.write("checkin-statuses: " .. table.concat(parts, " ") .. "\n")
    end
end
