"""Group commit: callers submit keys one by one; one batch runs at a time, holding every key submitted while the
previous batch was running (up to ``max_batch``). A lone caller is served at once as a batch of one, so latency
is not traded for throughput; under load the batches grow by themselves and one database commit serves many
callers. A key submitted twice while waiting joins the same batch entry and both callers get its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchRunner = Callable[[list[K]], Awaitable[Mapping[K, V | Exception]]]


class GroupCommit(Generic[K, V]):
    def __init__(self, run: BatchRunner[K, V], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            keys = list(self._waiting)[: self._max_batch]
            futures = {key: self._waiting.pop(key) for key in keys}
            try:
                outcomes = await self._run(keys)
            except Exception as exc:  # the whole batch failed (for example the database is gone): tell every caller
                for waiting in futures.values():
                    for future in waiting:
                        if not future.done():
                            future.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for waiting in futures.values():
                    for future in waiting:
                        future.cancel()
                raise
            for key, waiting in futures.items():
                outcome = outcomes[key]
                for future in waiting:
                    if future.done():  # the caller gave up (cancelled); the outcome is in the database anyway
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
