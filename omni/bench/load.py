"""Load generators for the HTTP benchmarks, run as a second process; they talk only to 127.0.0.1.

wrk (Debian's `wrk` package) drives single requests when it is installed, with a Lua script
that builds each event body and repeats one key in ten; otherwise a bounded Python client with
threads does. Prepared requests (signed webhooks, whose signature this process cannot make)
come from files the caller wrote, one per wrk thread, one request a line: the value of one
header, a tab, the body; each thread posts its file's lines in order (again from the top if it
runs out) and the result says how many it began ("issued", one count per file). Batches are
always posted by the Python client: each request carries 1,000 events, so the client's own cost
per event is small. Every run stops by itself after its seconds (or its batches) and prints one
JSON object on stdout: {"requests", "seconds", "p50_ms", "p99_ms", "non_2xx", "errors", ...}.

    python -m omni.bench.load single URL --seconds 5 [--key KEY --contacts N --tag T]
    python -m omni.bench.load prepared URL --seconds 5 --requests-dir DIR --header NAME --content-type TYPE
    python -m omni.bench.load batch URL --key KEY --contacts N --events 4000 --tag T
"""
import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

CONNECTIONS = 32
# Seconds a request may take, for both clients. wrk's own default (2 s) leaves slower answers
# out of its latencies (p99 would stop at 2 s) and counts them as errors, once a check while they wait.
TIMEOUT = 30
# wrk's threads; prepared requests come in one file per thread: 1.txt, 2.txt...
THREADS = 2
BATCH_CONNECTIONS = 4
BATCH_SIZE = 1000
# One request in ten repeats an earlier event (same key, same body): a retry, answered 200.
DUPLICATE_EVERY = 10

# A script with only done() for GET /healthz, so wrk builds its request once, as for the ceiling.
WRK_DONE = r"""
function done(summary, latency, requests)
  io.write(string.format(
    '\n{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"non_2xx":%d,"errors":%d%s}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    extra_fields and extra_fields() or ""))
end
"""

WRK_EVENTS = r"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  contacts = tonumber(args[1] or "0")
  tag = args[2] or "t"
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
end

function request()
  counter = counter + 1
  local n = counter
  if counter % DUPLICATE_EVERY == 0 then
    n = counter - 5
  end
  local event_id = tag .. "-" .. id .. "-" .. n
  local body = string.format(
    '{"event_id":"%s","external_id":"c%d","name":"order.placed","properties":{"order_id":"%s","total":42.5}}',
    event_id, (n * 7 + id) % contacts, event_id)
  return wrk.format(nil, nil, nil, body)
end

""".replace("DUPLICATE_EVERY", str(DUPLICATE_EVERY)) + WRK_DONE


# Each thread reads its own file in init(); request() only looks a line up.
WRK_PREPARED = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  header = args[2]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[3]
  values, bodies = {}, {}
  -- wrk calls request() once on the first thread before the run, to check the script
  -- (script_verify_request): that request is never sent, so it is not counted.
  issued = id == 1 and -1 or 0
  for line in io.lines(args[1] .. "/" .. id .. ".txt") do
    local tab = line:find("\t", 1, true)
    values[#values + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
end

function request()
  issued = issued + 1
  local line = (issued - 1) % #bodies + 1
  wrk.headers[header] = values[line]
  return wrk.format(nil, nil, nil, bodies[line])
end

function extra_fields()
  local counts = {}
  for _, thread in ipairs(threads) do
    counts[#counts + 1] = tostring(thread:get("issued"))
  end
  return ',"issued":[' .. table.concat(counts, ",") .. ']'
end

""" + WRK_DONE


def event_body(tag: str, thread: int, counter: int, contacts: int) -> bytes:
    """The body the wrk script sends for this thread's counter-th request (same rule)."""
    n = counter - 5 if counter % DUPLICATE_EVERY == 0 else counter
    event_id = f"{tag}-{thread}-{n}"
    return (f'{{"event_id":"{event_id}","external_id":"c{(n * 7 + thread) % contacts}","name":"order.placed",'
            f'"properties":{{"order_id":"{event_id}","total":42.5}}}}').encode()


def run_single(url: str, *, seconds: float, key: str = "", contacts: int = 0, tag: str = "t") -> dict:
    """GET url (no key) or POST events to it (with a key) under CONNECTIONS connections."""
    if shutil.which("wrk"):
        return _wrk(url, seconds=seconds, key=key, contacts=contacts, tag=tag)
    return _threads(url, seconds=seconds, key=key, contacts=contacts, tag=tag)


def run_prepared(url: str, *, seconds: float, requests_dir: str, header: str, content_type: str) -> dict:
    """POST the prepared requests in requests_dir (THREADS files) under CONNECTIONS connections."""
    if shutil.which("wrk"):
        return _wrk(url, seconds=seconds, script=WRK_PREPARED, args=[requests_dir, header, content_type])
    return _threads_prepared(url, seconds=seconds, requests_dir=requests_dir, header=header, content_type=content_type)


def _wrk(url, *, seconds, key="", contacts=0, tag="", script=None, args=None) -> dict:
    if script is None:
        script = WRK_EVENTS if key else WRK_DONE
        args = [str(contacts), tag, key] if key else []
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script_file:
        script_file.write(script)
        script_file.flush()
        out = subprocess.run(
            ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", f"--timeout={TIMEOUT}s",
             "--latency", "-s", script_file.name, url, "--", *args],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return {**result, "client": f"wrk -t{THREADS} -c{CONNECTIONS}"}


def _threads_prepared(url, *, seconds, requests_dir, header, content_type) -> dict:
    """The Python client's way through prepared requests: connection i takes the next line of
    file i % THREADS + 1."""
    files = []
    for number in range(1, THREADS + 1):
        with open(f"{requests_dir}/{number}.txt", encoding="utf-8") as lines:
            files.append([line.rstrip("\n").split("\t", 1) for line in lines])
    issued = [0] * THREADS
    lock = threading.Lock()

    def next_request(thread: int):
        file = thread % THREADS
        with lock:
            issued[file] += 1
            value, body = files[file][(issued[file] - 1) % len(files[file])]
        return body.encode(), {header: value, "Content-Type": content_type}

    result = _connections(url, seconds, next_request)
    return {**result, "issued": issued}


def _threads(url, *, seconds, key, contacts, tag) -> dict:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def next_request(thread: int):
        counters[thread] += 1
        return (event_body(tag, thread, counters[thread], contacts), headers) if key else (None, {})

    counters = [0] * (CONNECTIONS + 1)
    return _connections(url, seconds, next_request)


def _connections(url, seconds, next_request) -> dict:
    """CONNECTIONS threads, each sending next_request(its number)'s (body, headers) until the
    deadline: a POST with a body, a GET without."""
    parts = urlsplit(url)
    deadline = time.perf_counter() + seconds
    latencies, non_2xx, errors = [], [0], [0]
    lock = threading.Lock()

    def connection_loop(thread: int):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
        mine, bad, failed = [], 0, 0
        while time.perf_counter() < deadline:
            body, headers = next_request(thread)
            started = time.perf_counter()
            try:
                if body is None:
                    conn.request("GET", parts.path)
                else:
                    conn.request("POST", parts.path, body, headers)
                response = conn.getresponse()
                response.read()
                bad += not 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            non_2xx[0] += bad
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=connection_loop, args=(i + 1,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, **_percentiles(latencies), "non_2xx": non_2xx[0],
            "errors": errors[0], "client": f"python threads, {CONNECTIONS} connections"}


def run_batches(url: str, *, key: str, contacts: int, events: int, tag: str) -> dict:
    """POST `events` events in batches of BATCH_SIZE over BATCH_CONNECTIONS connections."""
    parts = urlsplit(url)
    bodies = []
    for start in range(0, events, BATCH_SIZE):
        batch = [{"event_id": f"{tag}-{i}", "external_id": f"c{i % contacts}", "name": "order.placed",
                  "properties": {"order_id": f"{tag}-{i}", "total": 42.5}}
                 for i in range(start, min(start + BATCH_SIZE, events))]
        bodies.append(json.dumps({"events": batch}).encode())
    pending = list(reversed(bodies))
    latencies, totals = [], {"stored": 0, "duplicate": 0, "refused": 0, "non_2xx": 0}
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def connection_loop():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while True:
            with lock:
                if not pending:
                    return
                body = pending.pop()
            started = time.perf_counter()
            conn.request("POST", parts.path, body, headers)
            response = conn.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status != 200:
                    totals["non_2xx"] += 1
                    continue
                counts = json.loads(answer)
                for status in ("stored", "duplicate", "refused"):
                    totals[status] += counts[status]

    started = time.perf_counter()
    threads = [threading.Thread(target=connection_loop) for _ in range(BATCH_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "events": events, "seconds": elapsed, **_percentiles(latencies), **totals,
            "client": f"python threads, {BATCH_CONNECTIONS} connections, {BATCH_SIZE} events a batch"}


def _percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(latencies)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": at(0.50), "p99_ms": at(0.99)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["single", "prepared", "batch"])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--key", default="")
    parser.add_argument("--contacts", type=int, default=0)
    parser.add_argument("--events", type=int, default=BATCH_SIZE)
    parser.add_argument("--tag", default="t")
    parser.add_argument("--requests-dir", help="prepared: the directory of 1.txt, 2.txt... (one per wrk thread)")
    parser.add_argument("--header", help="prepared: the header each line's first field is the value of")
    parser.add_argument("--content-type", default="application/x-www-form-urlencoded")
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname != "127.0.0.1":
        parser.error("the load generator talks only to 127.0.0.1")
    if args.mode == "single":
        result = run_single(args.url, seconds=args.seconds, key=args.key, contacts=args.contacts, tag=args.tag)
    elif args.mode == "prepared":
        result = run_prepared(args.url, seconds=args.seconds, requests_dir=args.requests_dir, header=args.header,
                              content_type=args.content_type)
    else:
        result = run_batches(args.url, key=args.key, contacts=args.contacts, events=args.events, tag=args.tag)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
