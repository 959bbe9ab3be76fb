"""The services' periodic loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from common.metrics import LOOP_CYCLE_SECONDS, LOOP_ERRORS

log = logging.getLogger(__name__)


async def run_periodically(
    name: str,
    interval: float,
    cycle: Callable[[], Awaitable[object]],
    *,
    wake: asyncio.Event | None = None,
    initial_delay: float = 0.0,
) -> None:
    """Run ``cycle`` every ``interval`` seconds (or earlier when ``wake`` is set), forever. A failing cycle is
    logged and counted; the loop goes on."""
    await asyncio.sleep(initial_delay)
    while True:
        started = time.perf_counter()
        try:
            await cycle()
        except Exception:
            LOOP_ERRORS.labels(name).inc()
            log.exception("%s cycle failed", name)
        finally:
            LOOP_CYCLE_SECONDS.labels(name).observe(time.perf_counter() - started)
        if wake is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()
