"""The Kubernetes manifest, its Secrets template and the Dockerfile: offline schema validation against a pinned
Kubernetes version, consistency with the code (ports, health names, settings, DNS addresses, NetworkPolicy, the
database Service, the models volume, the archive CronJob), and an image that only copies files that exist."""

from __future__ import annotations

import copy
import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.config import Settings
from tests.k8s.fake_apiserver import fake_apiserver
from tests.k8s.manifest_checker import (
    KUBERNETES_NAMES,
    MANIFEST,
    MODEL_DIR_IN_IMAGE,
    NON_ROOT_UID,
    ROOT,
    SECRETS_EXAMPLE,
    Doc,
    definitions,
    find,
    load_documents,
    manifest_problems,
    pod_spec,
)

# The Kubernetes version whose JSON schemas the manifest must satisfy (bundled with kubernetes-validate).
KUBERNETES_VERSION = "1.32.0"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def documents() -> list[Doc]:
    return load_documents()


@pytest.fixture(scope="module")
def secrets() -> list[Doc]:
    return load_documents(SECRETS_EXAMPLE)


# --- offline schema validation -----------------------------------------------------------------------------------


def test_the_manifest_is_yaml_with_the_expected_objects(documents: list[Doc]) -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    for k8s_name in KUBERNETES_NAMES.values():
        assert ("Deployment", k8s_name) in kinds
        assert ("Service", k8s_name) in kinds
    for expected in [
        ("Namespace", "crypto-trading"),
        ("ConfigMap", "trade-exec-coinbase-config"),
        ("ConfigMap", "trade-proc-orchestrator-config"),
        ("Job", "db-migrate"),
        ("CronJob", "db-archive"),
        ("Service", "mysql"),
        ("EndpointSlice", "mysql-1"),
        ("PersistentVolumeClaim", "signal-generator-models"),
    ]:
        assert expected in kinds
    assert any(kind == "NetworkPolicy" for kind, _ in kinds)
    assert len(kinds) == len(documents), "two documents share a kind and name"


def test_secrets_are_only_in_the_template_so_reapplying_never_resets_them(
    documents: list[Doc], secrets: list[Doc]
) -> None:
    assert not [doc for doc in documents if doc["kind"] == "Secret"]
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in secrets} == {
        ("Secret", "crypto-trading-database"),
        ("Secret", "trade-exec-coinbase-secrets"),
    }
    referenced = {
        source["secretRef"]["name"]
        for doc in documents
        for container in pod_spec(doc).get("containers") or []
        for source in container.get("envFrom") or []
        if "secretRef" in source
    }
    assert referenced == {doc["metadata"]["name"] for doc in secrets}
    with_secret = copy.deepcopy(documents) + copy.deepcopy(secrets[:1])
    assert any("must not be in the manifest" in problem for problem in manifest_problems(with_secret, secrets))


def test_the_pinned_kubernetes_version_is_bundled() -> None:
    assert KUBERNETES_VERSION in kubernetes_validate.utils.all_versions()


def test_every_document_validates_against_the_kubernetes_schemas(documents: list[Doc], secrets: list[Doc]) -> None:
    for doc in [*documents, *secrets]:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        try:
            validated = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{where}: {path}: {exc.message}")
        assert validated == KUBERNETES_VERSION.rsplit(".", 1)[0], where


def test_schema_validation_rejects_an_unknown_field_and_a_named_grpc_probe_port(documents: list[Doc]) -> None:
    deployment = copy.deepcopy(find(documents, "Deployment", "trade-executor"))
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    container["readinessProbe"] = container.pop("readinesProbe")
    container["readinessProbe"]["grpc"]["port"] = "grpc"  # gRPC probes take a number, not a port name
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_client_dry_run_parses_the_manifest(tmp_path: Path) -> None:
    """`kubectl apply --dry-run=client --validate=false`, against a stand-in API server that only answers
    discovery (kubectl needs one to map kinds; nothing is applied anywhere)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-config")}
    for path in (MANIFEST, SECRETS_EXAMPLE):
        with fake_apiserver() as url:
            result = subprocess.run(
                ["kubectl", "apply", "--dry-run=client", "--validate=false", "--server", url, "-f", str(path)],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
        assert result.returncode == 0, result.stderr
        created = [line for line in result.stdout.splitlines() if line.endswith("created (dry run)")]
        assert len(created) == len(load_documents(path)), result.stdout


# --- consistency with the code -----------------------------------------------------------------------------------


def test_the_manifest_agrees_with_the_code(documents: list[Doc]) -> None:
    assert manifest_problems(documents) == []


def test_every_env_var_name_in_the_manifest_is_a_settings_field(documents: list[Doc], secrets: list[Doc]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    names: set[str] = set()
    for doc in [*documents, *secrets]:
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        pod = pod_spec(doc)
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            names |= {entry["name"] for entry in container.get("env") or []}
    assert names, "the manifest sets no environment at all"
    assert names <= fields, sorted(names - fields)


def test_service_links_would_collide_with_the_port_settings(documents: list[Doc]) -> None:
    """Why the checker insists on enableServiceLinks: false: Kubernetes would inject <SERVICE>_PORT=tcp://...
    for each Service, and for these Service names that is a Settings field (an invalid port)."""
    fields = {name.upper() for name in Settings.model_fields}
    injected = {
        f"{doc['metadata']['name'].upper().replace('-', '_')}_PORT" for doc in documents if doc["kind"] == "Service"
    }
    assert injected & fields


def _container(documents: list[Doc], k8s_name: str) -> dict[str, Any]:
    deployment = find(documents, "Deployment", k8s_name)
    assert deployment is not None
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _config(documents: list[Doc], kind: str, name: str) -> dict[str, Any]:
    doc = find(documents, kind, name)
    assert doc is not None
    data: dict[str, Any] = doc.get("stringData") or doc["data"]
    return data


def _set_env(documents: list[Doc], k8s_name: str, name: str, value: str) -> None:
    container = _container(documents, k8s_name)
    container["env"] = [e for e in container.get("env") or [] if e["name"] != name] + [{"name": name, "value": value}]


def _service_port(documents: list[Doc], k8s_name: str, port_name: str) -> dict[str, Any]:
    service = find(documents, "Service", k8s_name)
    assert service is not None
    port: dict[str, Any] = next(p for p in service["spec"]["ports"] if p["name"] == port_name)
    return port


def _network_policy(documents: list[Doc]) -> dict[str, Any]:
    policy: dict[str, Any] = next(doc for doc in documents if doc["kind"] == "NetworkPolicy")
    return policy


def _generator_pod(documents: list[Doc]) -> dict[str, Any]:
    deployment = find(documents, "Deployment", "signal-generator")
    assert deployment is not None
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _models_mount(documents: list[Doc]) -> dict[str, Any]:
    mounts = _container(documents, "signal-generator")["volumeMounts"]
    mount: dict[str, Any] = next(m for m in mounts if m["mountPath"] == MODEL_DIR_IN_IMAGE)
    return mount


def _archive_container(documents: list[Doc]) -> dict[str, Any]:
    cronjob = find(documents, "CronJob", "db-archive")
    assert cronjob is not None
    container: dict[str, Any] = pod_spec(cronjob)["containers"][0]
    return container


def _endpoint_slice(documents: list[Doc]) -> dict[str, Any]:
    endpoint_slice = find(documents, "EndpointSlice", "mysql-1")
    assert endpoint_slice is not None
    return endpoint_slice


def _rename_service(documents: list[Doc]) -> None:
    service = find(documents, "Service", "signal-bridge")
    assert service is not None
    service["metadata"]["name"] = "bridge"


Mutation = Callable[[list[Doc]], None]

MUTATIONS: dict[str, Mutation] = {
    "container grpc port": lambda d: _container(d, "trade-executor")["ports"][0].update(containerPort=8124),
    "container metrics port": lambda d: _container(d, "signal-bridge")["ports"][1].update(containerPort=9122),
    "readiness probe port": lambda d: _container(d, "signal-generator")["readinessProbe"]["grpc"].update(port=8026),
    "liveness probe port": lambda d: _container(d, "trade-orchestrator")["livenessProbe"]["grpc"].update(port=8022),
    "startup probe port": lambda d: _container(d, "signal-bridge")["startupProbe"]["grpc"].update(port=8023),
    "readiness health name": lambda d: _container(d, "signal-bridge")["readinessProbe"]["grpc"].update(
        service="crypto_trading.v1.SignalGeneratorService"
    ),
    "liveness health name": lambda d: _container(d, "trade-executor")["livenessProbe"]["grpc"].update(
        service="crypto_trading.v1.TradeExecutor"
    ),
    "service port": lambda d: _service_port(d, "trade-orchestrator", "grpc").update(port=8033),
    "service target port": lambda d: _service_port(d, "trade-executor", "grpc").update(targetPort=8025),
    "service metrics port": lambda d: _service_port(d, "signal-generator", "metrics").update(port=9999),
    "service name": _rename_service,
    "service selector": lambda d: (find(d, "Service", "trade-executor") or {})["spec"].update(
        selector={"app.kubernetes.io/name": "trade-orchestrator"}
    ),
    "port env var": lambda d: _set_env(d, "trade-executor", "TRADE_EXECUTOR_PORT", "9000"),
    "unknown env var name": lambda d: _set_env(d, "signal-bridge", "SIGNAL_BRIDGE_PRT", "8022"),
    "unknown config map key": lambda d: _config(d, "ConfigMap", "trade-exec-coinbase-config").update(
        COINBASE_API_SECRET="x"
    ),
    "address host": lambda d: _config(d, "ConfigMap", "crypto-trading-shared-config").update(
        TRADE_EXECUTOR_ADDR="trade-orchestrator:8024"
    ),
    "address port": lambda d: _config(d, "ConfigMap", "crypto-trading-shared-config").update(
        SIGNAL_BRIDGE_ADDR="signal-bridge:8025"
    ),
    "address left at localhost": lambda d: _config(d, "ConfigMap", "crypto-trading-shared-config").pop(
        "TRADE_ORCHESTRATOR_ADDR"
    ),
    "metrics annotation": lambda d: (find(d, "Deployment", "trade-executor") or {})["spec"]["template"]["metadata"][
        "annotations"
    ].update({"prometheus.io/port": "9023"}),
    "command": lambda d: _container(d, "trade-orchestrator").update(args=["serve", "executor"]),
    "network policy peer": lambda d: _network_policy(d)["spec"]["ingress"][0]["from"][0]["podSelector"].update(
        matchLabels={"app.kubernetes.io/name": "signal-bridge"}
    ),
    "network policy port": lambda d: _network_policy(d)["spec"]["ingress"][1]["ports"][0].update(port=8024),
    "network policy metrics port": lambda d: _network_policy(d)["spec"]["ingress"][1]["ports"][0].update(port=9023),
    "network policy target": lambda d: _network_policy(d)["spec"]["podSelector"].update(
        matchLabels={"app.kubernetes.io/name": "trade-orchestrator"}
    ),
    "termination grace": lambda d: (find(d, "Deployment", "signal-generator") or {})["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds=20
    ),
    "service links": lambda d: (find(d, "Deployment", "signal-bridge") or {})["spec"]["template"]["spec"].update(
        enableServiceLinks=True
    ),
    "root user": lambda d: (find(d, "Deployment", "trade-executor") or {})["spec"]["template"]["spec"][
        "securityContext"
    ].update(runAsUser=0),
    "writable root filesystem": lambda d: _container(d, "signal-bridge")["securityContext"].update(
        readOnlyRootFilesystem=False
    ),
    "live by default": lambda d: _config(d, "ConfigMap", "trade-exec-coinbase-config").update(EXECUTION_MODE="live"),
    "real secret value": lambda d: _config(d, "Secret", "trade-exec-coinbase-secrets").update(
        COINBASE_API_PRIVATE_KEY="-----BEGIN EC PRIVATE KEY-----"
    ),
    "migration command": lambda d: (find(d, "Job", "db-migrate") or {})["spec"]["template"]["spec"]["containers"][
        0
    ].update(args=["status"]),
    # Liveness never depends on the database or Coinbase; readiness does.
    "liveness on the dependencies": lambda d: _container(d, "trade-executor")["livenessProbe"]["grpc"].update(
        service=""
    ),
    "liveness on the readiness name": lambda d: _container(d, "signal-bridge")["livenessProbe"]["grpc"].update(
        service="crypto_trading.v1.SignalBridgeService"
    ),
    "startup on the dependencies": lambda d: _container(d, "trade-executor")["startupProbe"]["grpc"].update(
        service="crypto_trading.v1.TradeExecutorService"
    ),
    "readiness on liveness": lambda d: _container(d, "trade-executor")["readinessProbe"]["grpc"].update(
        service="liveness"
    ),
    # The database behind the selector-less Service "mysql".
    "database url by ip": lambda d: _config(d, "Secret", "crypto-trading-database").update(
        DATABASE_URL="mysql+asyncmy://REPLACE_ME_USER:REPLACE_ME_PASSWORD@172.22.32.1:3306/crypto_prices"
    ),
    "database url port": lambda d: _config(d, "Secret", "crypto-trading-database").update(
        DATABASE_URL="mysql+asyncmy://REPLACE_ME_USER:REPLACE_ME_PASSWORD@mysql:3307/crypto_prices"
    ),
    "mysql service selector": lambda d: (find(d, "Service", "mysql") or {})["spec"].update(
        selector={"app.kubernetes.io/name": "mysql"}
    ),
    "endpoint slice address": lambda d: _endpoint_slice(d)["endpoints"][0].update(addresses=["172.22.32.2"]),
    "endpoint slice port name": lambda d: _endpoint_slice(d)["ports"][0].update(name="db"),
    "endpoint slice service label": lambda d: _endpoint_slice(d)["metadata"]["labels"].update(
        {"kubernetes.io/service-name": "mariadb"}
    ),
    # The models volume.
    "models not a volume": lambda d: _models_mount(d).update(mountPath="/var/models"),
    "models read-only": lambda d: _models_mount(d).update(readOnly=True),
    "models claim name": lambda d: next(v for v in _generator_pod(d)["volumes"] if "persistentVolumeClaim" in v)[
        "persistentVolumeClaim"
    ].update(claimName="models"),
    "models rolling update": lambda d: (find(d, "Deployment", "signal-generator") or {})["spec"].update(
        strategy={"type": "RollingUpdate"}
    ),
    "seed source": lambda d: _generator_pod(d)["initContainers"][0].update(args=["/models", "/seed/models"]),
    "seed image": lambda d: _generator_pod(d)["initContainers"][0].update(image="busybox:1.36"),
    "seed writable root": lambda d: _generator_pod(d)["initContainers"][0]["securityContext"].update(
        readOnlyRootFilesystem=False
    ),
    # The archive CronJob.
    "archive age": lambda d: _archive_container(d).update(args=["archive", "--older-than", "30 days"]),
    "archive command": lambda d: _archive_container(d).update(args=["status"]),
    "archive concurrency": lambda d: (find(d, "CronJob", "db-archive") or {})["spec"].update(concurrencyPolicy="Allow"),
    "archive as root": lambda d: pod_spec(find(d, "CronJob", "db-archive") or {})["securityContext"].update(
        runAsUser=0
    ),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_the_checker_catches_a_changed_port_or_name(documents: list[Doc], secrets: list[Doc], mutation: str) -> None:
    """Each mutation changes a copy of the manifest or of the Secrets template (one list, split again)."""
    mutated = copy.deepcopy([*documents, *secrets])
    MUTATIONS[mutation](mutated)
    assert mutated != [*documents, *secrets]
    problems = manifest_problems(mutated[: len(documents)], mutated[len(documents) :])
    assert problems, f"the checker missed: {mutation}"


def test_the_checker_derives_ports_from_the_service_definitions(
    documents: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new default port in the code, with the manifest unchanged, is a disagreement."""
    executor = definitions()["executor"]
    field = Settings.model_fields[executor.port_setting]
    monkeypatch.setattr(field, "default", field.default + 1)
    assert any("TRADE_EXECUTOR_PORT" in problem for problem in manifest_problems(documents))


# --- the image ---------------------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def _copy_sources(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context (not --from another stage)."""
    pairs = []
    for keyword, rest in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        pairs += [(source, paths[-1]) for source in paths[:-1]]
    return pairs


def _ignored(source: str, patterns: list[str]) -> bool:
    name = source.rstrip("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name.split("/")[0], pattern):
            ignored = not negate
    return ignored


def test_the_dockerfile_copies_only_files_that_exist_and_are_in_the_build_context() -> None:
    instructions = dockerfile_instructions()
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    sources = _copy_sources(instructions)
    assert sources
    for source, _ in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_the_image_contains_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs = pyproject["tool"]["setuptools"].get("package-dir", {})
    needed = {"pyproject.toml"}
    for package in pyproject["tool"]["setuptools"]["packages"]:
        top = package.split(".")[0]
        needed.add(package_dirs.get(top, top).split("/")[0])
    copied = {source.rstrip("/") for source, _ in _copy_sources(dockerfile_instructions())}
    assert needed <= copied, sorted(needed - copied)


def test_the_image_installs_the_ml_extra_and_bakes_in_the_model() -> None:
    instructions = dockerfile_instructions()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "ml" in extras
    assert any(keyword == "RUN" and 'pip install ".[ml]"' in rest for keyword, rest in instructions)
    final = _final_stage(instructions)
    model_copies = [(s, d) for s, d in _copy_sources(final) if s.rstrip("/") == "models"]
    assert model_copies, "the runtime stage must COPY models/"
    assert model_copies[0][1].rstrip("/") == MODEL_DIR_IN_IMAGE
    assert ("WORKDIR", "/app") in final


def test_the_image_runs_as_the_non_root_user_and_chooses_the_service_by_command() -> None:
    final = _final_stage(dockerfile_instructions())
    base = final[0][1].split()[0]
    assert "slim" in base or base.startswith("${"), base
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].split(":")[0] == str(NON_ROOT_UID)
    entrypoint = next(rest for keyword, rest in final if keyword == "ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["cts"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "cts" in scripts
    env = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_cts_is_on_the_path_of_the_image_for_kubectl_exec() -> None:
    """`kubectl exec ... -- cts health` and the workloads' `command: ["cts"]` need the venv's bin first on PATH."""
    instructions = dockerfile_instructions()
    stage_starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    build = instructions[stage_starts[0] : stage_starts[1]]
    venvs = [rest.split()[-1] for keyword, rest in build if keyword == "RUN" and "-m venv" in rest]
    assert venvs == ["/opt/venv"]
    final = _final_stage(instructions)
    assert any(keyword == "COPY" and rest == "--from=build /opt/venv /opt/venv" for keyword, rest in final)
    env = " ".join(rest for keyword, rest in final if keyword == "ENV")
    path = next(word for word in env.split() if word.startswith("PATH="))
    assert path.removeprefix("PATH=").split(":")[0] == "/opt/venv/bin"


def test_the_python_base_image_matches_the_project() -> None:
    args = [rest for keyword, rest in dockerfile_instructions() if keyword == "ARG" and rest.startswith("PYTHON_IMAGE")]
    assert args == ["PYTHON_IMAGE=python:3.11-slim-bookworm"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_the_image_bakes_in_no_secrets() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            upper = rest.upper()
            for word in ("DATABASE_URL", "COINBASE_API_KEY", "COINBASE_API_PRIVATE", "PASSWORD", "SECRET", "TOKEN"):
                assert word not in upper, f"{keyword} {rest}"


def _copy_build_context(destination: Path) -> None:
    """What the Dockerfile's build stage copies from the context, .dockerignore applied to caches."""
    instructions = dockerfile_instructions()
    stage_starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    build_stage = instructions[stage_starts[0] : stage_starts[1]]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, target in _copy_sources(build_stage):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, destination / target, ignore=ignore)
        else:
            shutil.copy(origin, destination / target)


def test_the_build_stage_context_builds_a_package_that_migrates_from_site_packages(tmp_path: Path) -> None:
    """`pip install .` on exactly what the Dockerfile copies: the wheel holds every service, the CLI and the
    migrations, and `cts migrate` works from the installed location (not from the repository)."""
    context, site = tmp_path / "src", tmp_path / "site-packages"
    context.mkdir()
    _copy_build_context(context)
    wheel_dir = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = wheel_dir.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    entry_points = next(site.glob("*.dist-info/entry_points.txt")).read_text()
    assert "cts = cts.main:main" in entry_points
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'image.db'}",
    }
    code = (
        "import sys, importlib; from cts.main import main\n"
        "for m in ('generator_svc', 'bridge_svc', 'orchestrator_svc', 'executor_svc'):\n"
        "    importlib.import_module(m + '.server').DEFINITION\n"
        "    assert importlib.import_module(m).__file__.startswith(sys.argv[1]), m\n"
        "sys.exit(main(['migrate']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is at revision" in result.stdout
