"""A filled order is never lost (issue 22): expiry never cancels a recommendation whose order may have reached the
exchange; past its window such an order is looked up by its client_order_id, never placed again; the
reconciliation reports orders the database does not know. Live executors against the fake Coinbase."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import grpc
import pytest

from common.clock import utc_now
from common.control import ControlKey, read_control
from common.metrics import EXCHANGE_UNKNOWN_ORDERS
from common.server import running_service
from executor_svc.server import DEFINITION
from orchestrator_svc.cycle import CycleTerms
from orchestrator_svc.repository import OrchestratorRepository
from tests.executor_svc.test_service import crash_after_send, process, wait_for_status
from tests.support.fake_coinbase import FakeCoinbase, live_settings
from tests.support.rows import states
from tests.support.seed import seed_recommendation

WINDOW = timedelta(hours=2)


async def _expire(engine: Any) -> list[int]:
    """An orchestrator cycle for which every recommendation is past its window."""
    now = utc_now()
    terms = CycleTerms(0, 3, timedelta(seconds=30), now + WINDOW, timedelta(seconds=10), "not executed in time", now)
    opening = await OrchestratorRepository(engine).open_cycle("orchestrator-test", terms)
    return opening.cancelled


async def test_expiry_after_a_crash_ends_executed_with_the_exchanges_fill_and_no_second_order(
    database_url: str, engine: Any, fake: FakeCoinbase, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = await seed_recommendation(engine, created_at=utc_now() - timedelta(minutes=90))
    idle = await seed_recommendation(engine, symbol="ETH-USD", created_at=utc_now() - timedelta(minutes=90))
    await crash_after_send(database_url, fake, rec, monkeypatch)
    assert (fake.order_posts, fake.distinct_orders()) == (1, 1)  # the exchange filled it; we recorded nothing
    assert (await states(engine, rec))[:2] == ("PENDING", "PENDING")

    # The window runs out: the orchestrator cancels what never reached an executor, not the order in flight.
    assert await _expire(engine) == [idle]
    assert (await states(engine, rec))[0] == "PENDING"

    # A restarted executor, now past the window (30 min): finds the order by client_order_id, never re-sends it.
    settings = live_settings(database_url, fake, orchestrator_pending_window_seconds=1800)
    async with running_service(DEFINITION, settings):
        await wait_for_status(engine, rec, "EXECUTED")
    status, order_status, row = await states(engine, rec)
    (order,) = fake.orders.values()
    assert (status, order_status) == ("EXECUTED", "EXECUTED")
    assert row.exchange_order_id == order["order_id"]
    assert str(row.filled_size.normalize()) == order["filled_size"].rstrip("0").rstrip(".")
    assert fake.order_posts == 1
    assert fake.list_requests >= 1


async def test_an_order_that_never_reached_the_exchange_is_cancelled_after_its_window_not_placed(
    database_url: str, engine: Any, fake: FakeCoinbase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executor_svc.live_broker import LiveBroker

    rec = await seed_recommendation(engine, created_at=utc_now() - timedelta(minutes=90))

    async def dies_before_sending(self: Any, order: Any, ledger: Any = None) -> Any:
        raise RuntimeError("simulated crash before the order is sent")

    with monkeypatch.context() as patch:
        patch.setattr(LiveBroker, "execute", dies_before_sending)
        async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
            with pytest.raises(grpc.aio.AioRpcError):
                await process(service.port, rec)
    assert (await states(engine, rec))[:2] == ("PENDING", "PENDING")
    settings = live_settings(database_url, fake, orchestrator_pending_window_seconds=1800)
    async with running_service(DEFINITION, settings):
        await wait_for_status(engine, rec, "CANCELLED")
    status, order_status, row = await states(engine, rec)
    assert (status, order_status) == ("CANCELLED", "CANCELLED")
    assert "never placed" in row.error_message
    assert fake.order_posts == 0


async def test_the_reconciliation_reports_an_order_the_database_does_not_know(
    database_url: str, engine: Any, fake: FakeCoinbase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rec = await seed_recommendation(engine)
    foreign = fake.add_foreign_order("BTC-USD", client_order_id="another-installation-1")
    settings = live_settings(database_url, fake, reconcile_interval_seconds=0.3)
    async with running_service(DEFINITION, settings) as service:
        await process(service.port, rec)  # ours: known, never reported
        report: dict[str, Any] = {}
        for _ in range(100):
            async with engine.connect() as conn:
                saved = await read_control(conn, ControlKey.RECONCILIATION)
            report = json.loads(saved) if saved else {}
            if report.get("orders_seen") == 2:
                break
            await asyncio.sleep(0.1)
    assert report["unknown_count"] == 1
    assert foreign in report["unknown"][0]
    assert report["mismatch_count"] == 0
    assert EXCHANGE_UNKNOWN_ORDERS._value.get() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("does not know" in w and foreign in w for w in warnings)


def _listed(client_order_id: str, filled: str, status: str = "FILLED") -> Any:
    from decimal import Decimal

    from executor_svc.coinbase_client import ListedOrder, OrderState

    state = OrderState(f"ex-{client_order_id}", status, Decimal(filled), Decimal("100"), Decimal("0.1"))
    return ListedOrder(f"ex-{client_order_id}", client_order_id, "BTC-USD", "BUY", state)


def _record(rec: int, status: str, filled: str | None) -> Any:
    from decimal import Decimal

    from common.lifecycle import ExecutionMode, OrderSide, OrderStatus
    from executor_svc.domain import ExecutionRecord

    return ExecutionRecord(
        rec, f"c{rec}", f"ex-c{rec}", ExecutionMode.LIVE, OrderStatus(status), "BTC-USD", OrderSide.BUY,
        None if filled is None else Decimal(filled), None, None, "", "", None,
    )  # fmt: skip


def test_compare_names_every_disagreement() -> None:
    from executor_svc.reconciliation import compare

    records = {
        "c1": _record(1, "EXECUTED", "0.5"),  # agrees
        "c2": _record(2, "EXECUTED", "0.5"),  # the exchange has no fill
        "c3": _record(3, "FAILED", None),  # the exchange filled it
        "c4": _record(4, "EXECUTED", "0.5"),  # a different size there
        "c5": _record(5, "SUBMITTED", None),  # unfinished: to resolve
        "c6": _record(6, "EXECUTED", "0.5"),  # the exchange does not list it
    }
    orders = [
        _listed("c1", "0.5"),
        _listed("c2", "0", "CANCELLED"),
        _listed("c3", "0.5"),
        _listed("c4", "0.4"),
        _listed("c5", "0.5"),
        _listed("stranger", "1"),
    ]
    report = compare(orders, records, utc_now())
    assert report.orders_seen == 6
    assert len(report.unknown) == 1
    assert "stranger" in report.unknown[0]
    assert report.unfinished == [5]
    assert [m.split(":")[0] for m in report.mismatches] == [
        "recommendation 2",
        "recommendation 3",
        "recommendation 4",
        "recommendation 6",
    ]
    assert not report.clean
    assert compare([_listed("c1", "0.5")], {"c1": records["c1"]}, utc_now()).clean


def test_compare_knows_the_brackets_of_its_orders_and_their_recorded_exits() -> None:
    """A bracket attached to a known BUY is no unknown order; a recorded bracket exit (its execution carries the
    bracket's order id, its client_order_id is never at the exchange) is listed; a stranger's bracket is unknown."""
    from dataclasses import replace
    from decimal import Decimal

    from executor_svc.coinbase_client import ListedOrder, OrderState
    from executor_svc.reconciliation import compare

    def bracket(order_id: str, parent: str, status: str = "OPEN", filled: str = "0") -> ListedOrder:
        state = OrderState(order_id, status, Decimal(filled), Decimal("100"), Decimal(0), originating_order_id=parent)
        return ListedOrder(order_id, "", "BTC-USD", "SELL", state, order_type="BRACKET", originating_order_id=parent)

    records = {
        "c1": _record(1, "EXECUTED", "0.5"),  # a BUY whose bracket is open
        "c2": _record(2, "EXECUTED", "0.5"),  # a BUY whose bracket filled...
        "c3": replace(_record(3, "EXECUTED", "0.5"), exchange_order_id="br-2"),  # ...recorded as its exit
    }
    orders = [
        _listed("c1", "0.5"),
        bracket("br-1", "ex-c1"),
        _listed("c2", "0.5"),
        bracket("br-2", "ex-c2", "FILLED", "0.5"),
        bracket("br-x", "ex-stranger"),  # attached to an order this installation never placed
    ]
    report = compare(orders, records, utc_now())
    assert report.orders_seen == 5
    assert report.mismatches == []
    assert len(report.unknown) == 1
    assert "br-x" in report.unknown[0]
    # Without the parent's record, its bracket is unknown too (the check can fail).
    assert len(compare(orders, {"c2": records["c2"], "c3": records["c3"]}, utc_now()).unknown) == 3
