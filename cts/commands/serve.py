"""`cts serve <service>`: the same as `python -m <service>_svc`."""

from __future__ import annotations

import argparse
import importlib

from common.services import SERVICE_NAMES, service

HELP = "start one service: generator, bridge, orchestrator or executor"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", choices=SERVICE_NAMES)


def run(args: argparse.Namespace) -> int:
    from common.server import run as run_service

    definition = importlib.import_module(f"{service(args.service).package}.server").DEFINITION
    return run_service(definition)
