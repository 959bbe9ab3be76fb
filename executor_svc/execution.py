"""The execution state machine, one code path for ProcessRecommendation and the stream.

1. The recommendation must exist (NOT_FOUND), be a BUY or SELL with a positive size (FAILED_PRECONDITION).
2. Already final: return the recorded result, place nothing.
The client_order_id is derived from the installation id and the recommendation id (executor_svc.client_order_id);
an execution already recorded keeps the id it stored.
Paper: 3-4 happen in one transaction per batch (executor_svc.repository.PaperSettlement): the recommendation rows
are locked, the fill is computed against the paper ledger and the execution, the recommendation and the balances
are written and committed together. Nothing leaves the database, so a crash leaves all of it or none of it.
Live:
   A recommendation from mock data (it or its signal has is_mock) is refused (FAILED_PRECONDITION, nothing sent).
3. Commit the execution row (status PENDING, deterministic client_order_id) BEFORE anything is sent.
4. Take the row's lease (committed; no transaction is held while Coinbase answers). Another executor's live lease:
   answer PENDING (it is being worked on), send nothing.
5. Send (or re-send after a crash or an expired lease: the same client_order_id, which Coinbase answers with the
   order it already has), then record EXECUTED / FAILED on the execution and the recommendation in one
   transaction. Accepted but not filled yet: SUBMITTED with the exchange order id. A transient exchange problem
   leaves both retryable. Every write gives the lease back.
One order per recommendation therefore holds across concurrent calls, replicas and crashes: the lease keeps
replicas from sending at the same time, and the client_order_id makes any re-send return the same order."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from common.clock import Clock
from common.errors import DomainError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.lifecycle import FINAL_ORDER, ExecutionMode, ExecutionStatus, ExitReason, OrderSide, OrderStatus
from common.metrics import EXCHANGE_UNKNOWN_ORDERS, EXECUTIONS, RECONCILIATION_MISMATCHES
from common.tables import MAX_ROW_ID
from executor_svc.client_order_id import client_order_id
from executor_svc.domain import (
    ExecutionRecord,
    ExecutionResult,
    OrderOutcome,
    OrderRequest,
    PositionExit,
    Recommendation,
)
from executor_svc.exits import ExitDecision, ExitRules, decide_exit
from executor_svc.group_commit import GroupCommit
from executor_svc.live_positions import LiveExecution, LivePositions, LivePositionStore
from executor_svc.positions import ClosedPosition, Position
from executor_svc.reconciliation import ReconciliationReport, compare

if TYPE_CHECKING:
    from executor_svc.coinbase_client import ListedOrder
    from executor_svc.exits import Candle

log = logging.getLogger(__name__)
T = TypeVar("T")
LEASE_POLL_SECONDS = 0.05
LOOKUP_MARGIN = timedelta(minutes=5)  # List Orders from a little before the execution row was written (clock skew)
# A recommendation in one of these states gets no new order: its recorded result is returned.
NO_NEW_ORDER = frozenset({ExecutionStatus.EXECUTED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})


class Broker(Protocol):
    mode: ExecutionMode

    async def execute(self, order: OrderRequest, ledger: Any) -> OrderOutcome: ...

    async def lookup(self, order: OrderRequest, since: datetime) -> OrderOutcome:
        """Resolve an order that may have reached the exchange without placing it (live only)."""
        ...


class PaperBatch(Protocol):
    """One transaction settling a batch of paper executions (executor_svc.repository.PaperSettlement)."""

    async def load(self, ids: Sequence[int]) -> tuple[dict[int, Recommendation], dict[int, ExecutionRecord]]: ...
    def complete(
        self,
        rec: Recommendation,
        client_order_id: str,
        mode: ExecutionMode,
        outcome: OrderOutcome,
        now: datetime,
        *,
        restarted: bool,
    ) -> None: ...


class ExecutorStore(LivePositionStore, Protocol):
    """What the executor needs from the database (executor_svc.repository.ExecutorRepository)."""

    async def installation_id(self) -> str: ...
    async def recommendation(self, recommendation_id: int) -> Recommendation | None: ...
    async def execution(self, recommendation_id: int) -> ExecutionRecord | None: ...
    async def unfinished(self) -> list[int]: ...
    async def create_execution(
        self, rec: Recommendation, client_order_id: str, mode: ExecutionMode, now: datetime
    ) -> None: ...
    async def take_lease(
        self, recommendation_id: int, owner: str, until: datetime, now: datetime, *, take_over: bool = False
    ) -> bool: ...
    async def record_attempt(
        self, recommendation_id: int, owner: str, outcome: OrderOutcome, now: datetime
    ) -> None: ...
    async def complete_live(
        self,
        recommendation_id: int,
        owner: str,
        outcome: OrderOutcome,
        now: datetime,
        *,
        opened: Position | None = None,
        closed: ClosedPosition | None = None,
    ) -> bool: ...
    async def settle(self, work: Callable[[Any], Awaitable[T]]) -> T: ...
    async def open_positions(self, mode: ExecutionMode) -> list[Position]: ...
    async def candles_between(
        self, symbols: Sequence[str], granularity: str, since: datetime, until: datetime
    ) -> dict[str, list[Candle]]: ...
    async def latest_closes(self, symbols: Sequence[str], granularity: str, until: datetime) -> dict[str, Decimal]: ...
    async def live_executions_since(self, since: datetime) -> dict[str, ExecutionRecord]: ...
    async def save_reconciliation(self, report: str, now: datetime) -> None: ...


class OrderLister(Protocol):
    async def list_orders(self, *, since: datetime, product_id: str | None = None) -> list[ListedOrder]: ...


def result_from_record(record: ExecutionRecord, replayed: bool) -> ExecutionResult:
    return ExecutionResult(
        recommendation_id=record.recommendation_id,
        status=ExecutionStatus(record.status) if record.status in FINAL_ORDER else ExecutionStatus.PENDING,
        client_order_id=record.client_order_id,
        mode=record.mode,
        symbol=record.symbol,
        side=record.side,
        exchange_order_id=record.exchange_order_id,
        filled_size=record.filled_size,
        average_price=record.average_price,
        fees=record.fees,
        error_reason=record.error_message,
        executed_at=record.completed_at if record.status == OrderStatus.EXECUTED else None,
        replayed=replayed,
    )


def outcome_status(outcome: OrderOutcome) -> ExecutionStatus:
    """The recommendation's status after an order outcome (an unfinished order leaves it PENDING)."""
    return ExecutionStatus.PENDING if outcome.status not in FINAL_ORDER else ExecutionStatus(outcome.status)


class Executor:
    """Paper executions settle in the database itself, so they go through a group commit: one transaction settles
    every paper request that arrived while the previous one was committing (a lone request is a batch of one).
    Live executions send an order to Coinbase, so each has its own row committed before the order is sent."""

    def __init__(
        self,
        repository: ExecutorStore,
        broker: Broker,
        clock: Clock,
        *,
        max_batch: int = 256,
        lease: timedelta = timedelta(seconds=120),
        replica_wait: float = 10.0,
        order_window: timedelta | None = None,
        exit_rules: ExitRules | None = None,
        granularity: str = "ONE_HOUR",
        refresh_clock: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.repository = repository
        self.broker = broker
        self.clock = clock
        self.lease = lease  # longer than the broker's worst case for one order (all retries included)
        self.replica_wait = replica_wait  # how long a call waits for another executor's outcome
        # A recommendation may be executed within this long of its creation (the orchestrator's window); after it,
        # an order that may have reached the exchange is looked up by its client_order_id, never placed again.
        self.order_window = order_window
        self.exit_rules = exit_rules or ExitRules(max_holding=None)
        self.granularity = granularity
        # Replay: read the market time the replay has reached before each request (common.market_clock).
        self.refresh_clock = refresh_clock
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._installation_id: str | None = None
        self._paper: GroupCommit[int, ExecutionResult] | None = (
            GroupCommit(self._settle_paper, max_batch) if broker.mode == ExecutionMode.PAPER else None
        )
        # Live positions (executor_svc.live_positions): the broker's exchange client follows brackets and cancels.
        exchange = getattr(broker, "client", None) if broker.mode == ExecutionMode.LIVE else None
        self._live: LivePositions | None = (
            LivePositions(
                repository, broker, exchange, clock, self.exit_rules, self._client_order_id, granularity=granularity
            )
            if exchange is not None
            else None
        )

    @staticmethod
    def validate_id(recommendation_id: int) -> None:
        if not 0 < recommendation_id <= MAX_ROW_ID:
            raise InvalidArgumentError(f"recommendation_id must be between 1 and {MAX_ROW_ID}")

    async def process(
        self, recommendation_id: int, *, take_over: bool = False, wait_for_replica: bool = True
    ) -> ExecutionResult:
        """Execute one recommendation (exactly once). ``take_over``: start-up recovery, whose live leases belong
        to a process that died (or to a replica: both then send the same client_order_id, one order)."""
        self.validate_id(recommendation_id)
        await self._ready()
        if self._paper is not None:
            return await self._paper.submit(recommendation_id)
        lock = self._locks[recommendation_id]
        try:
            async with lock:
                return await self._process_live(recommendation_id, take_over, wait_for_replica)
        finally:
            if not lock.locked() and not lock._waiters:
                self._locks.pop(recommendation_id, None)

    async def _ready(self) -> None:
        if self._installation_id is None:  # read once: it never changes for a database
            self._installation_id = await self.repository.installation_id()
        if self.refresh_clock is not None:
            await self.refresh_clock()

    async def manage_positions(self) -> tuple[list[PositionExit], int]:
        """Close the open positions whose stop-loss, take-profit or time limit was reached (executor_svc.exits),
        each in one transaction with its SELL recommendation, execution and the paper balances. Returns the exits
        and how many positions are still open."""
        await self._ready()
        if self._live is not None:
            return await self._live.manage(self.process)
        now = self.clock()
        held = await self.repository.open_positions(self.broker.mode)
        if not held or self.broker.mode != ExecutionMode.PAPER:
            return [], len(held)
        symbols = [p.symbol for p in held]
        since = min(p.opened_at for p in held)
        candles = await self.repository.candles_between(symbols, self.granularity, since, now)
        latest = await self.repository.latest_closes(symbols, self.granularity, now)
        exits: list[PositionExit] = []
        for position in held:
            decision = decide_exit(
                position, candles.get(position.symbol, []), now, self.exit_rules, latest.get(position.symbol)
            )
            if decision is not None:
                closed = await self._close_paper(position, decision, now)
                if closed is not None:
                    exits.append(closed)
        return exits, len(held) - len(exits)

    async def _close_paper(self, position: Position, decision: ExitDecision, now: datetime) -> PositionExit | None:
        reasoning = f"Exit ({decision.reason}): {decision.detail}"

        async def work(batch: Any) -> tuple[Recommendation, OrderRequest, OrderOutcome] | None:
            # Lock as every settlement does: the cash row first, then the other balances and the position.
            await self._preload(batch, [position.symbol])
            rec = await batch.exit_recommendation(position, decision.reason, decision.market_price, reasoning, now)
            if rec is None:  # closed meanwhile (another executor, a SELL)
                return None
            order = OrderRequest(
                recommendation_id=rec.id,
                client_order_id=self._client_order_id(rec.id),
                symbol=rec.symbol,
                side=OrderSide.SELL,
                quote_size=Decimal(0),
                base_size=position.quantity,
                exit_reason=decision.reason,
                market_price=decision.market_price,
            )
            outcome = await self.broker.execute(order, batch)
            batch.complete(rec, order.client_order_id, self.broker.mode, outcome, now, restarted=False)
            return rec, order, outcome

        settled = await self.repository.settle(work)
        if settled is None:
            return None
        rec, order, outcome = settled
        self._report(rec, order, outcome)
        if outcome.status != OrderStatus.EXECUTED:
            return None
        price = outcome.average_price or decision.market_price
        size = outcome.filled_size or position.quantity
        proceeds = (size * price).quantize(Decimal("0.00000001"))
        pnl = proceeds - (outcome.fees or Decimal(0)) - position.entry_cost
        log.info(
            "Position %s %s closed by %s at %s: %s (P&L %s USD)",
            position.id,
            position.symbol,
            decision.reason,
            price,
            decision.detail,
            pnl,
            extra={"recommendation_id": rec.id, "symbol": position.symbol, "exit_reason": decision.reason.value},
        )
        return PositionExit(position, decision.reason, rec.id, price, size, pnl)

    async def _preload(self, batch: Any, symbols: list[str]) -> None:
        preload = getattr(self.broker, "preload", None)
        if preload is not None:
            await preload(batch, symbols)

    def _prepare(
        self, recommendation_id: int, rec: Recommendation | None, record: ExecutionRecord | None
    ) -> ExecutionResult | OrderRequest:
        """Steps 1-2 (shared by paper and live): the recorded result when there is one, else the order to place."""
        if rec is None:
            raise NotFoundError(f"recommendation {recommendation_id} does not exist")
        if record is not None and record.status in FINAL_ORDER:
            return result_from_record(record, replayed=True)
        # A live order in flight (its execution row unfinished) is resolved even after an expiry cancelled it.
        in_flight = record is not None and record.mode == ExecutionMode.LIVE
        if rec.status in NO_NEW_ORDER and not (in_flight and rec.status == ExecutionStatus.CANCELLED):
            return ExecutionResult(
                recommendation_id=rec.id,
                status=rec.status,
                client_order_id=self._client_order_id(rec.id),
                mode=self.broker.mode,
                symbol=rec.symbol,
                side=rec.side,
                error_reason=rec.status_reason,
                replayed=True,
            )
        self._check(rec)
        side = rec.side
        assert side is not None  # _check refused HOLD
        if self.broker.mode == ExecutionMode.LIVE and rec.is_mock:
            raise FailedPreconditionError(
                f"recommendation {rec.id} comes from mock data (is_mock): live mode places no order for it"
            )
        if record is not None and record.mode != self.broker.mode:
            raise FailedPreconditionError(
                f"recommendation {rec.id} was started in {record.mode} mode; this executor runs {self.broker.mode}"
            )
        return OrderRequest(
            recommendation_id=rec.id,
            # An execution already recorded (a restart, an earlier version) keeps its stored id.
            client_order_id=record.client_order_id if record is not None else self._client_order_id(rec.id),
            symbol=rec.symbol,
            side=side,
            quote_size=rec.amount_usd,
            base_size=rec.amount_crypto or Decimal(0),
            stop_loss=rec.stop_loss,
            take_profit=rec.take_profit,
            exit_reason=rec.exit_reason or ExitReason.SIGNAL,
        )

    def _client_order_id(self, recommendation_id: int) -> str:
        assert self._installation_id is not None  # process() reads it first
        return client_order_id(self._installation_id, recommendation_id)

    async def _settle_paper(self, ids: list[int]) -> dict[int, ExecutionResult | Exception]:
        settled: list[tuple[Recommendation, OrderRequest, OrderOutcome]] = []

        async def work(batch: PaperBatch) -> dict[int, ExecutionResult | Exception]:
            settled.clear()  # a lock conflict runs the whole batch again
            outcomes: dict[int, ExecutionResult | Exception] = {}
            recs, records = await batch.load(ids)
            orders: list[tuple[Recommendation, OrderRequest]] = []
            for recommendation_id in ids:
                rec = recs.get(recommendation_id)
                try:
                    prepared = self._prepare(recommendation_id, rec, records.get(recommendation_id))
                except DomainError as exc:
                    outcomes[recommendation_id] = exc
                    continue
                if isinstance(prepared, ExecutionResult):
                    outcomes[recommendation_id] = prepared
                    continue
                assert rec is not None  # _prepare raised NotFoundError otherwise
                orders.append((rec, prepared))
            if orders:  # prices, positions and balances of the batch in a few statements
                await self._preload(batch, [order.symbol for _, order in orders])
            for rec, order in orders:
                settled.append((rec, order, await self.broker.execute(order, batch)))
            finished = self.clock()  # completed_at: the fills are decided, only the writes and the commit follow
            for rec, order, outcome in settled:
                if outcome.status != OrderStatus.PENDING:
                    restarted = rec.id in records
                    batch.complete(rec, order.client_order_id, self.broker.mode, outcome, finished, restarted=restarted)
                outcomes[rec.id] = self._result(rec, order, outcome, finished)
            return outcomes

        outcomes: dict[int, ExecutionResult | Exception] = await self.repository.settle(work)
        for rec, order, outcome in settled:
            self._report(rec, order, outcome)
        return outcomes

    async def _process_live(self, recommendation_id: int, take_over: bool, wait_for_replica: bool) -> ExecutionResult:
        rec = await self.repository.recommendation(recommendation_id)
        record = await self.repository.execution(recommendation_id)
        prepared = self._prepare(recommendation_id, rec, record)
        if isinstance(prepared, ExecutionResult):
            return prepared
        assert rec is not None  # _prepare raised NotFoundError otherwise
        order = prepared
        now = self.clock()
        if record is None:
            await self.repository.create_execution(rec, order.client_order_id, self.broker.mode, now)
        if not await self.repository.take_lease(rec.id, self.identity, now + self.lease, now, take_over=take_over):
            # Another executor (a replica) is sending it: wait a little for its outcome, holding nothing.
            for _ in range(int(self.replica_wait / LEASE_POLL_SECONDS) if wait_for_replica else 0):
                latest = await self.repository.execution(rec.id)
                if latest is not None and latest.status in FINAL_ORDER:
                    return result_from_record(latest, replayed=True)
                await asyncio.sleep(LEASE_POLL_SECONDS)
            return ExecutionResult(
                recommendation_id=rec.id,
                status=ExecutionStatus.PENDING,
                client_order_id=order.client_order_id,
                mode=self.broker.mode,
                symbol=rec.symbol,
                side=order.side,
                error_reason="another executor is sending this order; its outcome will be recorded",
            )
        # The lease is ours: no transaction is open while the exchange answers.
        live = LiveExecution(OrderOutcome(OrderStatus.PENDING))
        if self._live is not None:  # positions: brackets, POSITION_OPEN / NO_POSITION, cancel before a SELL
            since = (record.created_at or now) - LOOKUP_MARGIN if record is not None else None
            past_window = record is not None and self._past_window(rec, now)
            live = await self._live.execute(rec, order, since=since, past_window=past_window)
            outcome = live.outcome
        elif record is not None and self._past_window(rec, now):
            # It may have reached the exchange, and its window is over: find it, never place it now.
            since = (record.created_at or now) - LOOKUP_MARGIN
            outcome = await self.broker.lookup(order, since)
        else:
            outcome = await self.broker.execute(order, None)
        now = self.clock()
        if outcome.status == OrderStatus.PENDING:
            await self.repository.record_attempt(rec.id, self.identity, outcome, now)
        elif not await self.repository.complete_live(
            rec.id, self.identity, outcome, now, opened=live.opened, closed=live.closed
        ):
            latest = await self.repository.execution(rec.id)
            assert latest is not None
            return result_from_record(latest, replayed=True)
        self._report(rec, order, outcome)
        return self._result(rec, order, outcome, now)

    def _past_window(self, rec: Recommendation, now: datetime) -> bool:
        """The recommendation is older than the window in which it may be executed (or was cancelled for that)."""
        if rec.status == ExecutionStatus.CANCELLED:
            return True
        return self.order_window is not None and rec.created_at is not None and rec.created_at < now - self.order_window

    def _result(self, rec: Recommendation, order: OrderRequest, outcome: OrderOutcome, now: Any) -> ExecutionResult:
        return ExecutionResult(
            recommendation_id=rec.id,
            status=outcome_status(outcome),
            client_order_id=order.client_order_id,
            mode=self.broker.mode,
            symbol=rec.symbol,
            side=order.side,
            exchange_order_id=outcome.exchange_order_id,
            filled_size=outcome.filled_size,
            average_price=outcome.average_price,
            fees=outcome.fees,
            error_reason=outcome.error_message,
            executed_at=now if outcome.status == OrderStatus.EXECUTED else None,
        )

    def _report(self, rec: Recommendation, order: OrderRequest, outcome: OrderOutcome) -> None:
        EXECUTIONS.labels(outcome.status, self.broker.mode).inc()
        if outcome.status == OrderStatus.PENDING:
            log.warning(
                "recommendation %d left PENDING (retryable): %s",
                rec.id,
                outcome.error_message,
                extra={"recommendation_id": rec.id},
            )
        else:
            log.info(
                "recommendation %d %s: %s %s %s filled=%s avg=%s fees=%s %s",
                rec.id,
                outcome.status,
                self.broker.mode,
                order.side,
                rec.symbol,
                outcome.filled_size,
                outcome.average_price,
                outcome.fees,
                outcome.error_message,
                extra={
                    "recommendation_id": rec.id,
                    "client_order_id": order.client_order_id,
                    "exchange_order_id": outcome.exchange_order_id,
                },
            )

    @staticmethod
    def _check(rec: Recommendation) -> None:
        if rec.side is None:
            raise FailedPreconditionError(f"recommendation {rec.id} is {rec.signal_type}: nothing to execute")
        if rec.amount_usd is None or rec.amount_usd <= 0:
            raise FailedPreconditionError(f"recommendation {rec.id} has a non-positive amount_usd")
        if rec.side == OrderSide.SELL and (rec.amount_crypto is None or rec.amount_crypto <= 0):
            raise FailedPreconditionError(f"recommendation {rec.id} is a SELL with a non-positive amount_crypto")

    async def reconcile(self, exchange: OrderLister, lookback: timedelta) -> ReconciliationReport:
        """Compare the exchange's orders of the last ``lookback`` with the live executions, resolve what is
        unfinished, report what the database does not know or the exchange contradicts (executor_svc.reconciliation)."""
        now = self.clock()
        since = now - lookback
        orders = await exchange.list_orders(since=since)
        executions = await self.repository.live_executions_since(since - LOOKUP_MARGIN)
        report = compare(orders, executions, now)
        report.resolved, report.unresolved = await self.recover(take_over=False)
        EXCHANGE_UNKNOWN_ORDERS.set(len(report.unknown))
        RECONCILIATION_MISMATCHES.set(len(report.mismatches))
        for line in report.unknown:
            log.warning("Reconciliation: an order the database does not know: %s", line)
        for line in report.mismatches:
            log.warning("Reconciliation: the exchange disagrees: %s", line)
        log.info(
            "Reconciliation: %d order(s) listed, %d unknown, %d disagreeing, %d resolved, %d still unfinished",
            report.orders_seen,
            len(report.unknown),
            len(report.mismatches),
            report.resolved,
            report.unresolved,
        )
        await self.repository.save_reconciliation(report.to_json(), now)
        return report

    async def recover(self, *, take_over: bool = True) -> tuple[int, int]:
        """Resolve executions left unfinished (a crash, an exchange that was slow or down): follow or re-send the
        same client_order_id, never a new one; past its window an order is only looked up. Returns (resolved,
        still unfinished): only what really ended is counted as resolved."""
        resolved = unresolved = 0
        for recommendation_id in await self.repository.unfinished():
            try:
                result = await self.process(recommendation_id, take_over=take_over, wait_for_replica=False)
            except Exception:
                log.exception("could not resolve unfinished execution of recommendation %d", recommendation_id)
                unresolved += 1
                continue
            if result.status == ExecutionStatus.PENDING:
                unresolved += 1
            else:
                resolved += 1
        return resolved, unresolved
