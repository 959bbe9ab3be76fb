"""`cts health [--service NAME | --all] [--host HOST] [--live]`: ask the services' metrics ports for GET /health
(readiness: the status their gRPC health reports) or GET /live (liveness). Exit 0 only when every service asked
answers SERVING (ALIVE with --live), 1 otherwise, 2 for bad arguments or configuration.

Without --service or --all it asks every service whose metrics port answers on the host, so inside a pod
`kubectl exec deployment/trade-executor -- cts health` checks the one service that runs there."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from common.services import SERVICE_NAMES, SERVICES, service

HELP = "check the services' health over HTTP on their metrics ports (exit 0 only when SERVING)"

OK_STATUSES = {"/health": "SERVING", "/live": "ALIVE"}


@dataclass(frozen=True)
class Answer:
    service: str
    url: str
    reachable: bool
    status: str
    detail: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--service",
        action="append",
        choices=sorted([*SERVICE_NAMES, *(info.kubernetes_name for info in SERVICES)]),
        metavar="NAME",
        help="generator, bridge, orchestrator or executor (or the Kubernetes name); repeatable",
    )
    which.add_argument("--all", action="store_true", help="all four services (each must be SERVING)")
    parser.add_argument("--host", default="127.0.0.1", help="where the metrics ports are (default 127.0.0.1)")
    parser.add_argument("--live", action="store_true", help="ask /live (process alive) instead of /health")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per request (default 3)")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")


def ask(service: str, host: str, port: int, path: str, timeout: float) -> Answer:
    import httpx

    url = f"http://{host}:{port}{path}"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Answer(service, url, False, "UNREACHABLE", type(exc).__name__)
    try:
        body = response.json()
        status = str(body.get("status", "UNKNOWN"))
        reason = str(body.get("reason") or "")
    except (ValueError, AttributeError):
        return Answer(service, url, True, "UNKNOWN", f"HTTP {response.status_code}, not a health answer")
    if response.status_code != 200 and status == OK_STATUSES[path]:
        status = "UNKNOWN"  # 200 and the status must agree
    return Answer(service, url, True, status, reason)


def run(args: argparse.Namespace) -> int:
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    path = "/live" if args.live else "/health"
    names = (
        [info.name for info in SERVICES]
        if args.all or not args.service
        else list(dict.fromkeys(service(n).name for n in args.service))
    )
    ports = {name: service(name).metrics_port(settings) for name in names}
    disabled = [name for name, port in ports.items() if not port]
    if disabled and (args.all or args.service):
        print(f"cts health: metrics port disabled (0) for: {', '.join(disabled)}")
        return 1
    answers = [ask(name, args.host, port, path, args.timeout) for name, port in ports.items() if port]
    if not (args.all or args.service):  # discovery: only the services that run here
        answers = [a for a in answers if a.reachable]
        if not answers:
            where = ", ".join(f"{n} {p}" for n, p in ports.items() if p)
            print(f"cts health: no service answers on {args.host} (metrics ports: {where})")
            return 1
    if args.json:
        print(json.dumps([a.__dict__ for a in answers], indent=2))
    else:
        for a in answers:
            detail = f"  ({a.detail})" if a.detail else ""
            print(f"{a.service:<13} {a.status:<12} {a.url}{detail}")
    return 0 if all(a.status == OK_STATUSES[path] for a in answers) else 1
