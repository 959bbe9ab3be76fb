"""Monitoring in k8s/monitoring/: the Prometheus alert rules, the scrape job they rely on, and the Grafana dashboard.

Always (no tool needed): structure, the four alerts the guide asks for, and every expression checked against what
the code exports (common/metrics.py: metric names, their labels, the scrape job's target labels, the Kubernetes
names and namespace of the manifest). With promtool installed (Debian package "prometheus"): `promtool check
rules` on the rules and on the dashboard's queries, and promtool's unit tests that make each alert fire (and stay
quiet on a healthy system)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import common.metrics
from tests.k8s.manifest_checker import KUBERNETES_NAMES, NAMESPACE, ROOT, find, load_documents

MONITORING = ROOT / "k8s" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
REQUIRED_ALERTS = {
    "CtsServiceDown": "service down",
    "CtsNoSignal": "no signal for 15 minutes",
    "CtsExecutionsFailing": "executions failing",
    "CtsTradingHalted": "trading halted",
}
# Target labels the scrape job in prometheus.yml attaches to every series (plus Prometheus' own).
TARGET_LABELS = {"namespace", "pod", "app", "job", "instance"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")

_SELECTOR = re.compile(r"\b(up|cts_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_DURATION = re.compile(r"^\d+[smhd]$")


def exported_series() -> dict[str, set[str]]:
    """Every series name the services can export, with its label names: counters as <name>_total, histograms as
    _bucket (with le), _count and _sum, gauges as they are; plus Prometheus' own `up`."""
    series: dict[str, set[str]] = {"up": set()}
    for value in vars(common.metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        (family,) = value.describe()
        labels = set(getattr(value, "_labelnames", ()))
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = labels | {"le"}
            series[f"{family.name}_count"] = labels
            series[f"{family.name}_sum"] = labels
        else:
            series[family.name] = labels
    return series


def expression_problems(expr: str, namespace: str = NAMESPACE) -> list[str]:
    """What in a PromQL expression does not match the code or the manifest: unknown metrics, labels a metric does
    not have, a namespace or app that is not the manifest's."""
    series = exported_series()
    apps = set(KUBERNETES_NAMES.values())
    problems: list[str] = []
    used_labels: set[str] = set()
    found = False
    for match in _SELECTOR.finditer(expr):
        name, matchers = match.group(1), match.group(2) or ""
        if name not in series:
            problems.append(f"{name}: not a series the services export")
            continue
        known = series[name] | TARGET_LABELS
        used_labels |= known
        pairs = _MATCHER.findall(matchers)
        found = found or name != "up" or any(label == "app" for label, _, _ in pairs)  # `up` of our pods only
        for label, _, value in pairs:
            if label not in known:
                problems.append(f"{name}: has no label {label!r}")
            if label == "namespace" and value != namespace:
                problems.append(f"{name}: namespace {value!r} is not {namespace!r}")
            if label == "app" and not set(value.split("|")) <= apps:
                problems.append(f"{name}: app {value!r} is not a Deployment of the manifest ({sorted(apps)})")
    for grouping in _GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            if label not in used_labels:
                problems.append(f"groups by {label!r}, which none of its series has")
    if not found:
        problems.append("references none of the services' metrics (nor `up` of their pods)")
    return problems


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            yield panel["title"], str(target["expr"])


# --- the alert rules, by structure and against the code -----------------------------------------------------------


def test_the_rule_file_has_the_guide_alerts_with_severity_and_text() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["name"]
    rules = load_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "two alerts share a name"
    assert set(REQUIRED_ALERTS) <= set(names)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert _DURATION.match(str(rule.get("for", "0s"))), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


@pytest.mark.parametrize("rule", load_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_expression_uses_what_the_services_export(rule: dict[str, Any]) -> None:
    assert expression_problems(str(rule["expr"])) == []


def test_the_service_down_alert_covers_every_deployment() -> None:
    expr = next(rule["expr"] for rule in load_rules() if rule["alert"] == "CtsServiceDown")
    for app in KUBERNETES_NAMES.values():
        assert f'absent(up{{namespace="{NAMESPACE}", app="{app}"}})' in expr


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum(increase(cts_signal_total{namespace="crypto-trading"}[1h]))', "not a series the services export"),
        ('cts_executions_total{namespace="crypto-trading", state="FAILED"}', "has no label 'state'"),
        ('cts_trading_halted{namespace="trading"} == 1', "namespace 'trading'"),
        ('up{namespace="crypto-trading", app="executor"} == 0', "not a Deployment of the manifest"),
        ('sum by (kind) (cts_executions_total{namespace="crypto-trading"})', "groups by 'kind'"),
        ('up{namespace="crypto-trading"} == 0', "references none of the services' metrics"),
    ],
)
def test_the_expression_check_catches_mistakes(expr: str, expected: str) -> None:
    assert any(expected in problem for problem in expression_problems(expr)), expression_problems(expr)


# --- the scrape job the rules and the dashboard rely on --------------------------------------------------------------


def test_the_scrape_job_gives_the_labels_the_rules_use_from_the_manifest_annotations() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = config["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    assert discovery["namespaces"]["names"] == [NAMESPACE]
    targets = {r["target_label"]: r["source_labels"] for r in job["relabel_configs"] if "target_label" in r}
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    assert targets["pod"] == ["__meta_kubernetes_pod_name"]
    assert targets["app"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    assert {"namespace", "pod", "app"} <= TARGET_LABELS
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    documents = load_documents()
    for k8s_name in KUBERNETES_NAMES.values():
        deployment = find(documents, "Deployment", k8s_name)
        assert deployment is not None
        template = deployment["spec"]["template"]["metadata"]
        assert template["annotations"]["prometheus.io/scrape"] == keep["regex"]
        assert template["labels"]["app.kubernetes.io/name"] == k8s_name


# --- the Grafana dashboard ---------------------------------------------------------------------------------------


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["current"]["value"] == NAMESPACE
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_dashboard_query_uses_what_the_services_export() -> None:
    for title, expr in dashboard_queries(load_dashboard()):
        assert "$namespace" in expr, title
        assert expression_problems(expr.replace("$namespace", NAMESPACE)) == [], title


def test_the_dashboard_shows_every_metric_the_services_export() -> None:
    shown = " ".join(expr for _, expr in dashboard_queries(load_dashboard()))
    for value in vars(common.metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            assert family.name in shown, f"{family.name} is exported but not on the dashboard"


# --- promtool (when installed) ------------------------------------------------------------------------------------


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES), cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$namespace", NAMESPACE)}
        for i, (_, expr) in enumerate(dashboard_queries(load_dashboard()))
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The promtool checks above can fail."""
    document = yaml.safe_load(RULES.read_text())
    document["groups"][0]["rules"][0]["expr"] = "sum by (app (up)"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document))
    assert promtool("check", "rules", str(path), cwd=tmp_path).returncode != 0


# Each case: input series (1-minute steps), the time to evaluate, and per alert the label sets expected to fire
# (severity is added from the rule). A healthy system fires nothing.
UP = {app: f'up{{namespace="{NAMESPACE}", app="{app}", pod="{app}-0"}}' for app in KUBERNETES_NAMES.values()}
SERVING = {
    name: f'cts_health_serving{{namespace="{NAMESPACE}", app="{app}", pod="{app}-0", service="{name}"}}'
    for name, app in KUBERNETES_NAMES.items()
}
GENERATOR_CYCLES = f'cts_loop_cycle_seconds_count{{namespace="{NAMESPACE}", app="signal-generator", loop="generator"}}'
GENERATOR_ERRORS = f'cts_loop_errors_total{{namespace="{NAMESPACE}", app="signal-generator", loop="generator"}}'
SIGNALS = f'cts_signals_total{{namespace="{NAMESPACE}", app="signal-generator", signal_type="HOLD"}}'
HALTED = f'cts_trading_halted{{namespace="{NAMESPACE}", app="trade-orchestrator", pod="trade-orchestrator-0"}}'


def _executions(status: str) -> str:
    return f'cts_executions_total{{namespace="{NAMESPACE}", app="trade-executor", status="{status}", mode="LIVE"}}'


def healthy(minutes: int = 40) -> dict[str, str]:
    """A system that works: every pod up and serving, a generator cycle every 5 minutes, a new signal every
    10 minutes, executions that succeed, no halt."""
    series = {UP[app]: f"1x{minutes}" for app in UP}
    series |= {SERVING[name]: f"1x{minutes}" for name in SERVING}
    series[GENERATOR_CYCLES] = " ".join(str(minute // 5) for minute in range(minutes + 1))
    series[GENERATOR_ERRORS] = f"0x{minutes}"
    series[SIGNALS] = " ".join(str(minute // 10) for minute in range(minutes + 1))
    series[_executions("EXECUTED")] = f"0+1x{minutes}"
    series[_executions("FAILED")] = f"0x{minutes}"
    series[HALTED] = f"0x{minutes}"
    return series


def _case(name: str) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    ns = {"namespace": NAMESPACE}
    series = healthy()
    fired: dict[str, list[dict[str, str]]] = {}
    if name == "executor down":
        series[UP["trade-executor"]] = "1 1 1 1 1 " + "0 " * 36
        fired["CtsServiceDown"] = [{**ns, "app": "trade-executor"}]
    elif name == "bridge gone":
        del series[UP["signal-bridge"]]
        fired["CtsServiceDown"] = [{**ns, "app": "signal-bridge"}]
    elif name == "executor not serving":
        series[SERVING["executor"]] = "1 1 1 1 1 " + "0 " * 36
        fired["CtsServiceNotServing"] = [{**ns, "service": "executor"}]
    elif name == "generator stuck":  # cycles stop after 20 minutes
        series[GENERATOR_CYCLES] = " ".join(str(min(minute, 20) // 5) for minute in range(41))
        fired["CtsNoSignal"] = [{}]
    elif name == "generator failing":  # cycles go on, every one raises
        series[GENERATOR_ERRORS] = " ".join(str(max(minute - 15, 0) // 5) for minute in range(41))
        series[GENERATOR_CYCLES] = " ".join(str(minute // 5) for minute in range(41))
        fired["CtsNoSignal"] = [{}]
        fired["CtsLoopFailing"] = [{**ns, "loop": "generator"}]
    elif name == "executions failing":
        series[_executions("EXECUTED")] = f"0x{40}"
        series[_executions("FAILED")] = "0+1x40"
        fired["CtsExecutionsFailing"] = [{**ns, "mode": "LIVE"}]
    elif name == "trading halted":
        series[HALTED] = "0 0 0 0 0 " + "1 " * 36
        fired["CtsTradingHalted"] = [ns]
    return series, fired


CASES = [
    "healthy",
    "executor down",
    "bridge gone",
    "executor not serving",
    "generator stuck",
    "generator failing",
    "executions failing",
    "trading halted",
]


def _render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def promtool_tests(cases: list[str]) -> dict[str, Any]:
    rules = {rule["alert"]: rule for rule in load_rules()}
    tests = []
    for name in cases:
        series, fired = _case(name)
        alert_tests = []
        for alert in [*REQUIRED_ALERTS, *(a for a in rules if a not in REQUIRED_ALERTS)]:
            expected = []
            for labels in fired.get(alert, []):
                full = {**labels, "severity": rules[alert]["labels"]["severity"]}
                annotations = {key: _render(text, full) for key, text in rules[alert]["annotations"].items()}
                expected.append({"exp_labels": full, "exp_annotations": annotations})
            alert_tests.append({"eval_time": "40m", "alertname": alert, "exp_alerts": expected})
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": [{"series": key, "values": value} for key, value in series.items()],
                "alert_rule_test": alert_tests,
            }
        )
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}


@needs_promtool
def test_promtool_unit_tests_fire_each_alert_and_nothing_on_a_healthy_system(tmp_path: Path) -> None:
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(promtool_tests(CASES), sort_keys=False))
    result = promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same harness with a wrong expectation (the healthy system said to be halted) fails."""
    document = promtool_tests(["healthy"])
    halted = next(t for t in document["tests"][0]["alert_rule_test"] if t["alertname"] == "CtsTradingHalted")
    halted["exp_alerts"] = [{"exp_labels": {"namespace": NAMESPACE, "severity": "warning"}}]
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert promtool("test", "rules", str(path), cwd=tmp_path).returncode != 0
