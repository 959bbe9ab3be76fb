"""`cts resume`: clear the trading halt."""

from __future__ import annotations

import argparse

HELP = "resume trading (clear the kill switch) through the orchestrator, or --direct in the database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="resumed", help="note stored with the change")
    parser.add_argument("--actor", default="cts resume", help="who resumes it")
    parser.add_argument("--direct", action="store_true", help="write the flag in DATABASE_URL, not via the RPC")


def run(args: argparse.Namespace) -> int:
    from cts.trading_halt import set_halt

    return set_halt(False, args.reason, args.actor, args.direct)
