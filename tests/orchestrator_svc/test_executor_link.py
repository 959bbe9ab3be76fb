"""The executor's stream items read as typed reports: google.rpc.Status for items it could not process (and the
deprecated error_code name from older executors), order sides and statuses as enums."""

from __future__ import annotations

import grpc
from google.rpc import status_pb2

from common.config import (
    MAX_BACKOFF_SECONDS,
    coinbase_attempt_budget_seconds,
    executor_deadline_seconds,
    load_settings,
)
from common.http_retry import RetryPolicy
from common.lifecycle import ExecutionStatus, OrderSide
from crypto_trading.v1 import common_pb2, executor_pb2
from orchestrator_svc.executor_link import ExecutorLink, to_report


def test_an_executed_item() -> None:
    report = to_report(
        executor_pb2.ExecutionResult(
            recommendation_id=5,
            status=common_pb2.EXECUTION_STATUS_EXECUTED,
            order_side=common_pb2.ORDER_SIDE_SELL,
            symbol="ETH-USD",
            filled_size="0.5",
            exchange_order_id="abc",
        )
    )
    assert report.status == ExecutionStatus.EXECUTED
    assert report.side == OrderSide.SELL
    assert (report.error_code, report.retryable) == ("", False)


def test_an_item_refused_with_a_status() -> None:
    code = grpc.StatusCode.FAILED_PRECONDITION
    report = to_report(
        executor_pb2.ExecutionResult(
            recommendation_id=5, error=status_pb2.Status(code=code.value[0], message="HOLD"), error_reason="HOLD"
        )
    )
    assert report.status is None
    assert report.error_code == "FAILED_PRECONDITION"
    assert not report.retryable


def test_the_executors_own_problem_is_retryable() -> None:
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
        report = to_report(
            executor_pb2.ExecutionResult(
                recommendation_id=5,
                status=common_pb2.EXECUTION_STATUS_PENDING,
                error=status_pb2.Status(code=code.value[0], message="database lost"),
            )
        )
        assert report.retryable
        assert report.error_code == code.name


def test_an_older_executor_sends_only_the_code_name() -> None:
    report = to_report(executor_pb2.ExecutionResult(recommendation_id=5, error_code="NOT_FOUND"))
    assert report.error_code == "NOT_FOUND"
    assert not report.retryable
    assert to_report(executor_pb2.ExecutionResult(recommendation_id=5, error_code="UNAVAILABLE")).retryable


def test_the_timeout_budget_in_numbers() -> None:
    paper = load_settings({})
    live = load_settings({}, execution_mode="live", market_data_source="coinbase")
    # 5 attempts of 10 s, and the longest backoffs between them: 0.75 + 1.5 + 3 + 6 s.
    assert coinbase_attempt_budget_seconds(live) == 61.25
    assert executor_deadline_seconds(paper) == 15.0
    assert executor_deadline_seconds(live) == 15.0 + 61.25
    assert ExecutorLink(live).timeout == 76.25
    assert ExecutorLink(paper).timeout == 15.0
    assert paper.claim_ttl_seconds < 10  # a dead orchestrator's claims free up within 10 s


def test_the_budget_follows_the_retry_settings() -> None:
    settings = load_settings(
        {}, coinbase_max_retries=3, coinbase_timeout_seconds=2, coinbase_backoff_seconds=20, execution_mode="paper"
    )
    # Waits 30 (20 x 1.5), then 60 and 120 capped at the retry policy's longest backoff.
    assert RetryPolicy().max_backoff == MAX_BACKOFF_SECONDS
    assert coinbase_attempt_budget_seconds(settings) == 4 * 2 + 3 * MAX_BACKOFF_SECONDS
    assert coinbase_attempt_budget_seconds(load_settings({}, coinbase_max_retries=0)) == 10.0
