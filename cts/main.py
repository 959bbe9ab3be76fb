"""`cts`: the operator's command line. Each sub-command lives in cts/commands/<name>.py and is imported only
when used (so `cts status` does not load pandas or xgboost)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

# Every module in cts/commands is a sub-command named after the module. Each defines HELP (one line),
# add_arguments(parser) and run(args) -> int, and imports heavy dependencies only inside run().


def command_names() -> list[str]:
    import cts.commands

    return sorted(m.name for m in pkgutil.iter_modules(cts.commands.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cts", description="Crypto trading system")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_names():
        module = importlib.import_module(f"cts.commands.{name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args._module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
