"""`cts`: the operator's command line. Each sub-command lives in cts/commands/<name>.py and is imported only
when used (so `cts status` does not load pandas or xgboost)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from cts.errors import describe_error

# Every module in cts/commands is a sub-command named after the module. Each defines HELP (one line),
# add_arguments(parser) and run(args) -> int, and imports heavy dependencies only inside run().


def command_names() -> list[str]:
    import cts.commands

    return sorted(m.name for m in pkgutil.iter_modules(cts.commands.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cts", description="Crypto trading system")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_names():
        module = importlib.import_module(f"cts.commands.{name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        command_parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command. A configuration, database, network or file problem ends it with one line on stderr
    naming the cause (never a secret) and exit code 1; --debug shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args._module.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"cts {args.command}: {describe_error(exc)}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
