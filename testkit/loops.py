"""Waiting for a service process's background loop: its first cycle, seen on the metrics endpoint (tests and
bench)."""

from __future__ import annotations

import asyncio
import re
import time

import httpx


async def wait_for_first_cycle(metrics_port: int, loop: str, within: float = 60.0) -> None:
    """Return once the process serving metrics on ``metrics_port`` has finished a cycle of its ``loop`` (counted by
    the cts_loop_cycle_seconds histogram)."""
    pattern = re.compile(rf'^cts_loop_cycle_seconds_count\{{loop="{re.escape(loop)}"\}} (\S+)$', re.MULTILINE)
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            try:
                body = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            except httpx.HTTPError:
                body = ""
            match = pattern.search(body)
            if match is not None and float(match.group(1)) >= 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {loop} loop cycle within {within}s")
            await asyncio.sleep(0.1)
