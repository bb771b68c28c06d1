"""wrk replaying requests built beforehand, each sent once: signed requests at wrk's pace.

A request straight to a service carries a signed context with a single-use nonce, which wrk
cannot compute. So the requests are built (and signed) in Python before the round, written
one per line, and each wrk thread sends its share in order. Python's signing then costs the
machine nothing while the servers are timed, and both sides of a comparison pay wrk's same
small per-request Lua cost. If a round outruns the requests built for it (a thread wraps
around and resends a used nonce), it is run again with twice as many as it managed to send.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from bench.http_load import BenchRequestFailed, RequestFactory
from bench.measure import Sample

# Requests built per second of a round, at first: above what 2 cores serve straight to a
# service; a faster machine gets a second try sized by what the first one sent.
FIRST_RATE = 5000
TRIES = 3

# Thread k of n sends lines k+1, k+1+n, ... of the file, built as raw requests in init().
# done() sums each thread's wraps (a line sent twice) next to wrk's own figures.
_LUA = """\
local threads, count = {}, 0
function setup(thread)
  thread:set("tid", count)
  count = count + 1
  table.insert(threads, thread)
end
local reqs, n = {}, 0
wraps = 0
function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      local path, headers = nil, {}
      for field in line:gmatch("[^\\t]+") do
        if path == nil then
          path = field
        else
          local name, value = field:match("^([^:]+):%s*(.*)$")
          headers[name] = value
        end
      end
      table.insert(reqs, wrk.format("GET", path, headers))
    end
    i = i + 1
  end
end
function request()
  n = n + 1
  if n > #reqs then
    n, wraps = 1, wraps + 1
  end
  return reqs[n]
end
function done(summary, latency, requests)
  local e, wrapped = summary.errors, 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + thread:get("wraps")
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50_us": %d, "p99_us": %d, "wraps": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), wrapped))
end
"""


def _write_requests(path: Path, factory: RequestFactory, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            target, headers = factory(i)
            fields = [target, *(f"{name}: {value}" for name, value in headers.items())]
            out.write("\t".join(fields) + "\n")


def _once(
    binary: str,
    base_url: str,
    factory: RequestFactory,
    *,
    concurrency: int,
    seconds: int,
    count: int,
) -> dict[str, int]:
    threads = min(2, concurrency)
    with tempfile.TemporaryDirectory(prefix="tenantkit-wrk-") as tmp:
        script, requests = Path(tmp) / "replay.lua", Path(tmp) / "requests.tsv"
        script.write_text(_LUA)
        _write_requests(requests, factory, count)
        argv = [binary, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s"]
        return wrk_figures(
            [*argv, "-s", str(script), base_url, "--", str(requests), str(threads)],
            timeout=seconds + 60,
        )


def wrk_figures(argv: list[str], *, timeout: float) -> dict[str, int]:
    """Run wrk with one of the bench's Lua scripts; the JSON line the script prints at the end."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    line = next((x for x in result.stdout.splitlines() if x.startswith("{")), None)
    if result.returncode != 0 or line is None:
        raise BenchRequestFailed(f"wrk exited with {result.returncode}: {result.stderr[-300:]}")
    figures: dict[str, int] = json.loads(line)
    return figures


def wrk_sample(figures: dict[str, int], *, concurrency: int, target: str) -> Sample:
    """The figures as a Sample; any non-2xx answer or socket error (or none served) fails it."""
    if figures["non_2xx"] or figures["socket_errors"] or not figures["requests"]:
        raise BenchRequestFailed(f"wrk against {target}: {figures}")
    return Sample(
        operations=figures["requests"],
        concurrency=concurrency,
        seconds=figures["duration_us"] / 1e6,
        latencies=[],
        quantiles={0.50: figures["p50_us"] / 1000, 0.99: figures["p99_us"] / 1000},
    )


def run_wrk_requests(
    binary: str, base_url: str, factory: RequestFactory, *, concurrency: int, seconds: float
) -> Sample:
    """wrk for `seconds`, each connection sending requests from `factory` that no one sent yet."""
    duration = max(1, round(seconds))
    count = FIRST_RATE * duration
    for _ in range(TRIES):
        figures = _once(
            binary, base_url, factory, concurrency=concurrency, seconds=duration, count=count
        )
        if not figures["wraps"]:
            break
        count = 2 * max(count, figures["requests"])
    else:
        raise BenchRequestFailed(f"wrk outran {count // 2} prepared requests in {duration} s")
    return wrk_sample(figures, concurrency=concurrency, target=base_url)
