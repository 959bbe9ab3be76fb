from __future__ import annotations

import asyncio
from pathlib import Path

from common.config import child_environment
from cts.health_probe import Endpoint
from cts.supervisor import FIRST_SERVICE_EXIT_CODE, Supervisor


def _endpoint(name: str, mode: str) -> Endpoint:
    return Endpoint(name, f"tests.support.fake_service {mode}", "x", "127.0.0.1:1")


async def test_a_failing_service_is_reported_and_the_rest_are_stopped(tmp_path: Path) -> None:
    supervisor = Supervisor(
        [_endpoint("executor", "ok"), _endpoint("orchestrator", "ok"), _endpoint("bridge", "fail")],
        child_environment({}),
        tmp_path,
    )
    await supervisor.start()
    failure = await asyncio.wait_for(supervisor.wait_for_failure(), 30)
    assert failure.name == "bridge"
    assert failure.returncode == 1
    assert failure.exit_code == FIRST_SERVICE_EXIT_CODE + 2
    assert "model file is missing" in failure.describe()
    codes = await supervisor.stop(grace=10)
    assert codes == {"executor": 0, "orchestrator": 0, "bridge": 1}
    assert "fake: stopped" in (tmp_path / "executor.log").read_text()


async def test_stop_terminates_every_child_cleanly(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(
        [_endpoint("a", "ok"), _endpoint("b", "ok")],
        child_environment({}),
        tmp_path,
        echo=lambda name, line: lines.append((name, line)),
    )
    await supervisor.start()
    for _ in range(100):
        if len({name for name, line in lines if line == "fake: serving"}) == 2:
            break
        await asyncio.sleep(0.05)
    assert supervisor.failed_child() is None
    assert await supervisor.stop(grace=10) == {"a": 0, "b": 0}
    assert ("a", "fake: stopped") in lines
    assert ("b", "fake: stopped") in lines
