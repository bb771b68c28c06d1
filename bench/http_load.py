"""The HTTP load generator: a fixed number of requests from a fixed number of asyncio workers.

aiohttp on one event loop sends several thousand requests a second on one core, more than
the services under test answer, so the figures are the server's, not the client's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp

from bench.measure import Sample

# (path, headers) for the i-th request.
RequestFactory = Callable[[int], tuple[str, dict[str, str]]]


class BenchRequestFailed(RuntimeError):
    """A request the bench sent was not answered 200: the comparison would be meaningless."""


async def _run(
    base_url: str, make_request: RequestFactory, *, requests: int, concurrency: int
) -> Sample:
    counter = itertools.count()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while (i := next(counter)) < requests:
                path, headers = make_request(i)
                started = time.perf_counter()
                async with session.get(path, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise BenchRequestFailed(
                            f"GET {base_url}{path} answered {response.status}: "
                            f"{(await response.text())[:200]}"
                        )
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Sample(
        operations=requests, concurrency=concurrency, seconds=elapsed, latencies=latencies
    )


def run_http(
    base_url: str, make_request: RequestFactory, *, requests: int, concurrency: int
) -> Sample:
    """Send `requests` GETs with `concurrency` keep-alive connections; time each one."""
    return asyncio.run(_run(base_url, make_request, requests=requests, concurrency=concurrency))
