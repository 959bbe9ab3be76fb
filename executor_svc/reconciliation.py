"""Reconciliation: the exchange's recent orders against trade_executions, so the two never disagree for long and
a filled order is never lost.

Every RECONCILE_INTERVAL_SECONDS the live executor lists the account's orders of the last RECONCILE_LOOKBACK_HOURS
(List Orders) and compares them with the live executions it recorded over the same time:
- an order whose client_order_id matches an unfinished execution: the execution is resolved (followed, or looked up
  past its window), so a missing record is written;
- an order the database does not know (another client on the same key, a manual order, or an installation whose
  database was lost): reported, never adopted;
- a recorded outcome the exchange contradicts (EXECUTED here, no fills there; filled sizes that differ; an executed
  order the exchange does not list): reported.
- the take-profit / stop-loss bracket attached to a live BUY is an order of its own (no client_order_id): one whose
  parent (originating_order_id) is a known order, or that is itself a recorded exit (an execution carries its order
  id), is neither unknown nor compared; a recorded bracket exit counts as listed when its order id is.
Reports go to the log (WARNING), the metrics and system_control, where `cts status` shows the last one."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from common.lifecycle import FINAL_ORDER, OrderStatus
from executor_svc.domain import ExecutionRecord

if TYPE_CHECKING:
    from executor_svc.coinbase_client import ListedOrder

MAX_LISTED = 20  # orders named in one report; the counts are always complete


@dataclass
class ReconciliationReport:
    checked_at: datetime
    orders_seen: int = 0
    unknown: list[str] = field(default_factory=list)  # exchange orders the database does not know
    mismatches: list[str] = field(default_factory=list)  # recorded outcomes the exchange contradicts
    unfinished: list[int] = field(default_factory=list)  # recommendations whose execution the exchange has news of
    resolved: int = 0
    unresolved: int = 0

    @property
    def clean(self) -> bool:
        return not self.unknown and not self.mismatches and not self.unresolved

    def to_json(self) -> str:
        data = asdict(self)
        data["checked_at"] = self.checked_at.isoformat(timespec="seconds")
        data["unknown_count"], data["mismatch_count"] = len(self.unknown), len(self.mismatches)
        data["unknown"], data["mismatches"] = self.unknown[:MAX_LISTED], self.mismatches[:MAX_LISTED]
        return json.dumps(data)


def _describe(order: ListedOrder) -> str:
    return (
        f"{order.order_id} ({order.product_id} {order.side} {order.state.status}, "
        f"client_order_id {order.client_order_id or '-'})"
    )


def compare(
    orders: Iterable[ListedOrder], executions: Mapping[str, ExecutionRecord], checked_at: datetime
) -> ReconciliationReport:
    """What the exchange lists against what was recorded (executions by client_order_id)."""
    report = ReconciliationReport(checked_at)
    listed = list(orders)
    seen: set[str] = set()
    listed_ids = {order.order_id for order in listed}
    # Orders this installation placed or recorded: a bracket attached to one of them (or recorded) is known.
    known = {r.exchange_order_id for r in executions.values() if r.exchange_order_id} | {
        o.order_id for o in listed if o.client_order_id and o.client_order_id in executions
    }
    for order in listed:
        report.orders_seen += 1
        if order.is_attached_bracket and (order.originating_order_id in known or order.order_id in known):
            continue
        seen.add(order.client_order_id)
        record = executions.get(order.client_order_id)
        if record is None:
            report.unknown.append(_describe(order))
        elif record.status not in FINAL_ORDER:
            report.unfinished.append(record.recommendation_id)
        elif record.status == OrderStatus.EXECUTED and order.state.filled_size == 0:
            report.mismatches.append(f"recommendation {record.recommendation_id}: EXECUTED here, {_describe(order)}")
        elif record.status != OrderStatus.EXECUTED and order.state.filled_size > 0:
            report.mismatches.append(
                f"recommendation {record.recommendation_id}: {record.status} here, filled {order.state.filled_size} "
                f"there: {_describe(order)}"
            )
        elif record.filled_size is not None and record.filled_size != order.state.filled_size:
            report.mismatches.append(
                f"recommendation {record.recommendation_id}: filled {record.filled_size} here, "
                f"{order.state.filled_size} there: {_describe(order)}"
            )
    for client_order_id, record in executions.items():
        if (
            record.status == OrderStatus.EXECUTED
            and client_order_id not in seen
            and record.exchange_order_id not in listed_ids
        ):
            report.mismatches.append(
                f"recommendation {record.recommendation_id}: EXECUTED here (order {record.exchange_order_id or '-'}), "
                "not listed by the exchange"
            )
    return report
