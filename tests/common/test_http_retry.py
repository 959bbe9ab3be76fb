"""The shared retry policy of the Coinbase clients: what is retried, how long it waits (backoff with jitter,
Retry-After honoured and capped) and when it gives up. The sleep is injected: nothing here really waits."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from common.http_retry import RetriesExhausted, RetryPolicy, retry_after_seconds

REQUEST = httpx.Request("GET", "https://api.example/x")


class Script:
    """Plays a list of answers (a status, (status, headers) or an exception) and records the sleeps."""

    def __init__(self, *answers: int | tuple[int, dict[str, str]] | Exception) -> None:
        self.answers = list(answers)
        self.sent = 0
        self.sleeps: list[float] = []
        self.problems: list[str] = []

    async def send(self) -> httpx.Response:
        answer = self.answers[self.sent]
        self.sent += 1
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, request=REQUEST)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def policy(
        self,
        jitter: Callable[[], float] = lambda: 0.5,
        *,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
    ) -> RetryPolicy:
        return RetryPolicy(max_retries, backoff, max_backoff, max_retry_after, sleep=self.sleep, jitter=jitter)


async def run(script: Script, policy: RetryPolicy) -> httpx.Response:
    return await policy.send(script.send, what="GET /x", on_problem=script.problems.append)


async def test_retries_429_5xx_and_transport_errors_with_exponential_backoff() -> None:
    script = Script(429, 500, httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 200)
    response = await run(script, script.policy(max_retries=4, backoff=1.0))
    assert response.status_code == 200
    assert script.sent == 5
    assert script.sleeps == [1.0, 2.0, 4.0, 8.0]  # jitter 0.5 -> factor 1
    assert script.problems == ["rate_limited", "server", "network", "timeout"]


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.5), (0.999, 1.499)])
async def test_jitter_spreads_the_delay_between_half_and_one_and_a_half(jitter: float, factor: float) -> None:
    script = Script(503, 200)
    await run(script, script.policy(jitter=lambda: jitter, backoff=2.0))
    assert script.sleeps == [pytest.approx(2.0 * factor)]


async def test_backoff_is_capped() -> None:
    script = Script(500, 500, 500, 200)
    await run(script, script.policy(backoff=10.0, max_backoff=15.0))
    assert script.sleeps == [10.0, 15.0, 15.0]


async def test_retry_after_seconds_is_honoured_and_capped() -> None:
    script = Script((429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"}), (429, {"Retry-After": "1.5"}), 200)
    await run(script, script.policy(backoff=0.01, max_retry_after=60.0))
    assert script.sleeps == [7.0, 60.0, 1.5]


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon", "-3", "nan", "inf", ""])
async def test_a_retry_after_that_is_not_seconds_falls_back_to_the_backoff(value: str) -> None:
    script = Script((429, {"Retry-After": value}), 200)
    await run(script, script.policy(backoff=0.25))
    assert script.sleeps == [0.25]


@pytest.mark.parametrize("status", [200, 201, 204, 301, 400, 401, 403, 404, 409, 422])
async def test_other_answers_are_returned_at_once(status: int) -> None:
    script = Script(status)
    response = await run(script, script.policy())
    assert response.status_code == status
    assert (script.sent, script.sleeps, script.problems) == (1, [], [])


async def test_gives_up_after_the_allowed_retries_naming_the_last_problem() -> None:
    script = Script(*([500] * 3), 429)
    with pytest.raises(RetriesExhausted, match=r"^GET /x: HTTP 429 after 4 attempts$") as info:
        await run(script, script.policy(max_retries=3, backoff=0.1))
    assert info.value.attempts == 4
    assert script.sent == 4
    assert len(script.sleeps) == 3  # no sleep after the last attempt


async def test_no_retries_means_one_attempt() -> None:
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(RetriesExhausted, match="ConnectError after 1 attempts"):
        await run(script, script.policy(max_retries=0))
    assert script.sleeps == []


async def test_other_exceptions_are_not_retried() -> None:
    script = Script(RuntimeError("bug"), 200)
    with pytest.raises(RuntimeError):
        await run(script, script.policy())
    assert script.sent == 1


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        RetryPolicy(max_retries=-1)


def test_retry_after_parsing() -> None:
    def answer(value: str | None) -> httpx.Response:
        return httpx.Response(429, headers={} if value is None else {"Retry-After": value}, request=REQUEST)

    assert retry_after_seconds(answer(None), 60) is None
    assert retry_after_seconds(answer(" 12 "), 60) == 12.0
    assert retry_after_seconds(answer("0"), 60) == 0.0
    assert retry_after_seconds(answer("120"), 30) == 30.0
