"""A stand-in child process for supervisor tests: `python -m tests.support.fake_service ok|fail`.

ok: prints a line, then runs until SIGTERM and exits 0. fail: prints a reason and exits 1 after a second (as a
real service fails after trying to load its model), so the "ok" siblings have installed their SIGTERM handler by
then: a SIGTERM that lands while a child is still starting Python kills it with -15 instead of a clean exit 0."""

from __future__ import annotations

import signal
import sys
import time


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    if mode == "fail":
        time.sleep(1.0)
        print("fake: cannot start: model file is missing", flush=True)
        return 1
    stopping = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    print("fake: serving", flush=True)
    while not stopping:
        time.sleep(0.05)
    print("fake: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
