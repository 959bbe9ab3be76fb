"""`cts halt --reason "..."`: stop all trading (every orchestrator replica obeys; the bridge keeps creating
recommendations). Through the orchestrator's SetTradingHalt RPC, or with --direct straight in the database."""

from __future__ import annotations

import argparse

HELP = "halt trading (kill switch) through the orchestrator, or --direct in the database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why trading is halted (required, <= 500 characters)")
    parser.add_argument("--actor", default="cts halt", help="who halts it")
    parser.add_argument("--direct", action="store_true", help="write the flag in DATABASE_URL, not via the RPC")


def run(args: argparse.Namespace) -> int:
    from cts.trading_halt import set_halt

    return set_halt(True, args.reason, args.actor, args.direct)
