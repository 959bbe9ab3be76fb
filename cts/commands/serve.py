"""`cts serve <service>`: the same as `python -m <service>_svc`."""

from __future__ import annotations

import argparse
import importlib

HELP = "start one service: generator, bridge, orchestrator or executor"

SERVICES = ("generator", "bridge", "orchestrator", "executor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", choices=SERVICES)


def run(args: argparse.Namespace) -> int:
    from common.server import run as run_service

    definition = importlib.import_module(f"{args.service}_svc.server").DEFINITION
    return run_service(definition)
