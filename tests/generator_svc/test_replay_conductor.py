"""The replay conducts the pipeline on market time (generator_svc.replay_conductor), without gRPC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from generator_svc.replay_conductor import OrchestrateOutcome, ReplayConductor, orchestration_times

T = datetime(2018, 5, 1, 12, tzinfo=UTC)


class FakePipeline:
    def __init__(self, remaining: list[int], failures: int = 0, halted: bool = False) -> None:
        self.remaining = remaining
        self.failures = failures
        self.halted = halted
        self.calls: list[str] = []

    async def manage_positions(self) -> None:
        self.calls.append("positions")

    async def bridge(self) -> None:
        if self.failures:
            self.failures -= 1
            self.calls.append("bridge failed")
            raise ConnectionError("bridge restarting")
        self.calls.append("bridge")

    async def orchestrate(self) -> OrchestrateOutcome:
        self.calls.append("orchestrate")
        return OrchestrateOutcome(remaining=self.remaining.pop(0), halted=self.halted)


def conductor(pipeline: FakePipeline, times: list[datetime]) -> ReplayConductor:
    async def set_market_time(when: datetime) -> None:
        times.append(when)
        pipeline.calls.append(f"clock {when:%H:%M:%S}")

    return ReplayConductor(
        pipeline, set_market_time, step=timedelta(seconds=30), candle=timedelta(hours=1), retry_seconds=0
    )


def test_orchestration_times_fill_the_candle_in_steps() -> None:
    times = orchestration_times(T, timedelta(seconds=30), timedelta(hours=1))
    assert len(times) == 120
    assert times[0] == T
    assert times[1] - times[0] == timedelta(seconds=30)
    assert times[-1] == T + timedelta(minutes=59, seconds=30)


async def test_steps_run_in_order_and_the_cap_is_worked_off_in_market_time() -> None:
    pipeline = FakePipeline(remaining=[4, 1, 0, 7])
    times: list[datetime] = []
    replay = conductor(pipeline, times)
    await replay.before_signals(T)
    await replay.after_signals(T)
    assert pipeline.calls == [
        "positions",
        "bridge",
        "orchestrate",
        "clock 12:00:30",
        "orchestrate",
        "clock 12:01:00",
        "orchestrate",
    ]
    assert pipeline.remaining == [7]  # nothing pending any more: no further cycle at this candle


async def test_a_candle_ends_its_cycles_after_its_hour_even_with_work_pending() -> None:
    pipeline = FakePipeline(remaining=[5] * 130)
    times: list[datetime] = []
    await conductor(pipeline, times).after_signals(T)
    assert pipeline.calls.count("orchestrate") == 120
    assert times[-1] == T + timedelta(minutes=59, seconds=30)


async def test_a_halt_ends_the_cycles_at_once() -> None:
    pipeline = FakePipeline(remaining=[5, 5], halted=True)
    await conductor(pipeline, []).after_signals(T)
    assert pipeline.calls.count("orchestrate") == 1


async def test_a_failing_step_is_retried_market_time_waits() -> None:
    pipeline = FakePipeline(remaining=[0], failures=2)
    times: list[datetime] = []
    await conductor(pipeline, times).after_signals(T)
    assert pipeline.calls == ["bridge failed", "bridge failed", "bridge", "orchestrate"]
    assert times == []
