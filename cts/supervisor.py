"""Run the four services as separate child processes and supervise them (`cts up`).

If one exits, the others are stopped (SIGTERM, then SIGKILL after a grace period) and the supervisor reports which
one failed and why. Children run in their own sessions, so Ctrl-C reaches only the supervisor, which then stops
them in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.services import service
from cts.health_probe import Endpoint

# `cts up` exit codes: 0 = stopped cleanly (Ctrl-C); a service's registered exit code (common.services, 10 to 13)
# when it died; FIRST_SERVICE_EXIT_CODE + its index for a child that is not one of the four.
FIRST_SERVICE_EXIT_CODE = 10


@dataclass
class Child:
    """One service process. ``endpoint.module`` is what follows ``python -m`` (a module, then optional args)."""

    endpoint: Endpoint
    index: int
    process: asyncio.subprocess.Process | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    reader: asyncio.Task[None] | None = None

    @property
    def exit_code(self) -> int:
        try:
            return service(self.endpoint.name).exit_code
        except KeyError:
            return FIRST_SERVICE_EXIT_CODE + self.index


@dataclass(frozen=True)
class ServiceFailure:
    name: str
    returncode: int | None
    exit_code: int
    last_lines: list[str]

    def describe(self) -> str:
        why = self.last_lines[-1] if self.last_lines else "no output"
        return f"{self.name} exited with code {self.returncode}: {why}"


class Supervisor:
    def __init__(
        self,
        endpoints: list[Endpoint],
        env: Mapping[str, str],
        log_dir: Path,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        self.children = [Child(ep, i) for i, ep in enumerate(endpoints)]
        self.env = dict(env)
        self.log_dir = log_dir
        self.echo = echo  # called with (service name, line) for every output line when set

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            child.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *child.endpoint.module.split(),
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            child.reader = asyncio.create_task(self._pump(child))

    async def _pump(self, child: Child) -> None:
        assert child.process is not None
        assert child.process.stdout is not None
        with (self.log_dir / f"{child.endpoint.name}.log").open("a", encoding="utf-8") as log:
            async for raw in child.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                child.tail.append(line)
                log.write(line + "\n")
                log.flush()
                if self.echo is not None:
                    self.echo(child.endpoint.name, line)

    async def wait_for_failure(self) -> ServiceFailure:
        """Return when any child exits (for whatever reason)."""
        waits = {asyncio.create_task(c.process.wait()): c for c in self.children if c.process is not None}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        child = waits[next(iter(done))]
        if child.reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.reader), 2)
        assert child.process is not None
        return ServiceFailure(child.endpoint.name, child.process.returncode, child.exit_code, list(child.tail))

    def failed_child(self) -> ServiceFailure | None:
        for child in self.children:
            if child.process is not None and child.process.returncode is not None:
                return ServiceFailure(child.endpoint.name, child.process.returncode, child.exit_code, list(child.tail))
        return None

    async def stop(self, grace: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every running child (upstream first), wait up to ``grace`` seconds, then SIGKILL."""
        for child in reversed(self.children):
            if child.process is not None and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for child in self.children:
            if child.process is None:
                continue
            try:
                codes[child.endpoint.name] = await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                codes[child.endpoint.name] = await child.process.wait()
            if child.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(child.reader, 2)
        return codes
