"""HTTP load for every comparison: wrk when installed, else the asyncio client of
`bench.http_load`. Fixed requests go to wrk as paths and headers; requests that must each be
different (signed, single-use) are built beforehand (`bench.wrk_requests`).

wrk (C, two threads) takes a small share of the 2 cores from the servers it measures; the
Python client takes more, which flattens ratios towards 1, so wrk is preferred. A newcomer's
`make bench` (and `make test`) works without it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.http_load import RequestFactory, run_http
from bench.measure import Sample
from bench.settings import Scale
from bench.wrk_requests import run_wrk_requests, wrk_figures, wrk_sample

# Each thread cycles through the paths; done() prints the figures as one JSON line.
_LUA = """\
local paths, headers, n = {}, {}, 0
function init(args)
  for i = 1, #args, 2 do
    if args[i] == "-H" then
      local name, value = args[i + 1]:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    else
      table.insert(paths, args[i + 1])
    end
  end
end
function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """Keep-alive GETs of `paths` (in turn) with fixed headers, from `concurrency` connections."""

    base_url: str
    paths: list[str]
    headers: dict[str, str]
    concurrency: int


def wrk_binary() -> str | None:
    """wrk on PATH, if installed (Debian: `apt-get install wrk`)."""
    return shutil.which("wrk")


def generator_name() -> str:
    """Which generator `run_load` uses on this machine."""
    return "wrk" if wrk_binary() else "python (aiohttp)"


def run_wrk(binary: str, load: Load, *, seconds: float) -> Sample:
    """`wrk` for `seconds`: its request count, duration and p50/p99; any non-200 fails it."""
    args: list[str] = []
    for name, value in load.headers.items():
        args += ["-H", f"{name}: {value}"]
    for path in load.paths:
        args += ["-p", path]
    threads = min(2, load.concurrency)
    with tempfile.TemporaryDirectory(prefix="tenantkit-wrk-") as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(_LUA)
        argv = [binary, f"-t{threads}", f"-c{load.concurrency}", f"-d{max(1, round(seconds))}s"]
        figures = wrk_figures(
            [*argv, "--timeout", "10s", "-s", str(script), load.base_url, "--", *args],
            timeout=seconds + 60,
        )
    return wrk_sample(
        figures, concurrency=load.concurrency, target=f"{load.base_url}{load.paths[0]}"
    )


def run_load(load: Load, *, seconds: float, requests: int) -> Sample:
    """wrk for `seconds` when installed, else `requests` requests from the Python client."""
    binary = wrk_binary()
    if binary is not None:
        return run_wrk(binary, load, seconds=seconds)
    paths, headers = load.paths, load.headers
    return run_http(
        load.base_url,
        lambda i: (paths[i % len(paths)], headers),
        requests=requests,
        concurrency=load.concurrency,
    )


def run_requests(
    base_url: str, factory: RequestFactory, *, concurrency: int, seconds: float, requests: int
) -> Sample:
    """Requests from `factory` (signed ones included, each sent once): wrk for `seconds` when
    installed, else `requests` of them from the Python client."""
    binary = wrk_binary()
    if binary is not None:
        return run_wrk_requests(binary, base_url, factory, concurrency=concurrency, seconds=seconds)
    return run_http(base_url, factory, requests=requests, concurrency=concurrency)


def http_round(url: str, factory: RequestFactory, scale: Scale) -> Callable[[], Sample]:
    """One round of `factory`'s requests against `url` at the scale's HTTP settings."""
    return lambda: run_requests(
        url,
        factory,
        concurrency=scale.http_concurrency,
        seconds=scale.tutorial_seconds,
        requests=scale.http_requests,
    )
