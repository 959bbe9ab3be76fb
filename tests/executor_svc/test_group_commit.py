"""The group commit behind paper settlement: batches form while one runs, keys are never run twice at once, and
failures reach exactly the callers they belong to."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from executor_svc.group_commit import GroupCommit


class Recorder:
    def __init__(self, fail_keys: frozenset[int] = frozenset(), fail_batch: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_keys = fail_keys
        self.fail_batch = fail_batch

    async def run(self, keys: list[int]) -> Mapping[int, str | Exception]:
        self.batches.append(keys)
        await self.release.wait()
        if self.fail_batch:
            raise ConnectionError("database gone")
        return {k: (ValueError(f"bad {k}") if k in self.fail_keys else f"done {k}") for k in keys}


async def test_a_lone_caller_runs_at_once_and_later_callers_share_the_next_batch() -> None:
    recorder = Recorder()
    group: GroupCommit[int, str] = GroupCommit(recorder.run, max_batch=3)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.batches == [[1]]  # not waiting for company
    rest = [asyncio.create_task(group.submit(k)) for k in (2, 3, 2, 4, 5)]
    await asyncio.sleep(0)
    recorder.release.set()
    assert await first == "done 1"
    assert await asyncio.gather(*rest) == ["done 2", "done 3", "done 2", "done 4", "done 5"]
    # key 2 was submitted twice while waiting: one entry, both callers answered; batches capped at 3 keys
    assert recorder.batches == [[1], [2, 3, 4], [5]]


async def test_an_exception_for_one_key_reaches_only_its_callers() -> None:
    recorder = Recorder(fail_keys=frozenset({7}))
    recorder.release.set()
    group: GroupCommit[int, str] = GroupCommit(recorder.run, max_batch=10)
    results = await asyncio.gather(group.submit(6), group.submit(7), group.submit(8), return_exceptions=True)
    assert results[0] == "done 6"
    assert results[2] == "done 8"
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad 7"


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    recorder = Recorder(fail_batch=True)
    group: GroupCommit[int, str] = GroupCommit(recorder.run, max_batch=10)
    doomed = [asyncio.create_task(group.submit(k)) for k in (1, 2)]
    await asyncio.sleep(0)
    recorder.release.set()
    for task in doomed:
        with pytest.raises(ConnectionError):
            await task
    recorder.fail_batch = False
    assert await group.submit(3) == "done 3"


async def test_a_cancelled_caller_does_not_stop_the_batch() -> None:
    recorder = Recorder()
    group: GroupCommit[int, str] = GroupCommit(recorder.run, max_batch=10)
    gone = asyncio.create_task(group.submit(1))
    stays = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.release.set()
    assert await stays == "done 2"
    assert recorder.batches == [[1, 2]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(Recorder().run, max_batch=0)
