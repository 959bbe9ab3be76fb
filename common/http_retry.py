"""The one retry policy of the Coinbase HTTP clients (trading and market data).

A request is retried when it could not be sent or answered (httpx transport errors and timeouts), or when the
answer is 429 or 5xx; any other answer is returned to the caller as it is. At most ``max_retries`` retries follow
the first attempt; then RetriesExhausted names the last problem. Between attempts it waits ``backoff * 2**n``
seconds with jitter (x0.5 to x1.5, at most ``max_backoff``), or what a ``Retry-After: <seconds>`` header asks
for (at most ``max_retry_after``; a date or garbage there is ignored and the backoff applies). ``sleep`` and
``jitter`` are injectable, so tests record the delays instead of waiting. Log lines name the request by method
and path only: never headers (the Authorization header carries a JWT)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class RetriesExhausted(Exception):
    """The last attempt failed too (transport error, timeout, 429 or 5xx)."""

    def __init__(self, what: str, problem: str, attempts: int) -> None:
        super().__init__(f"{what}: {problem} after {attempts} attempts")
        self.problem = problem
        self.attempts = attempts


def retryable_status(status_code: int) -> bool:
    return status_code == 429 or status_code >= 500


def retry_after_seconds(response: httpx.Response, cap: float) -> float | None:
    """The ``Retry-After`` header in seconds (at most ``cap``), or None when absent or not a number of seconds."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0
    sleep: Sleep = field(default=_asyncio_sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)  # uniform in [0, 1)

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("retry limits and delays must not be negative")

    def delay(self, retry: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first) after ``response`` (None: no answer)."""
        if response is not None:
            asked = retry_after_seconds(response, self.max_retry_after)
            if asked is not None:
                return asked
        return min(self.max_backoff, self.backoff * 2.0**retry * (0.5 + self.jitter()))

    async def send(
        self,
        send: Callable[[], Awaitable[httpx.Response]],
        *,
        what: str,
        on_problem: Callable[[str], None] | None = None,
    ) -> httpx.Response:
        """Call ``send`` until it returns a response that is not 429/5xx, and return that response.

        ``what`` names the request in messages ("GET /accounts"); ``on_problem`` hears the kind of every failed
        attempt: "timeout", "network", "rate_limited" or "server"."""
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = await send()
            except httpx.TimeoutException as exc:
                kind, problem = "timeout", type(exc).__name__
            except httpx.TransportError as exc:
                kind, problem = "network", type(exc).__name__
            else:
                if not retryable_status(response.status_code):
                    return response
                kind = "rate_limited" if response.status_code == 429 else "server"
                problem = f"HTTP {response.status_code}"
            if on_problem is not None:
                on_problem(kind)
            if attempt == self.max_retries:
                raise RetriesExhausted(what, problem, attempt + 1)
            delay = self.delay(attempt, response)
            log.info("%s: %s, retrying in %.2fs", what, problem, delay)
            await self.sleep(delay)
        raise AssertionError("unreachable")
