"""Checks that the Kubernetes manifest agrees with the code: every expected value is derived from the services'
definitions (DEFINITION in <svc>/server.py) and the Settings fields and defaults (common/config.py).

``manifest_problems(documents, secrets)`` returns one line per disagreement (empty when consistent), so the tests
can also prove that a changed port or name is caught. The Secrets live in k8s/secrets.example.yaml, never in the
manifest (re-applying the manifest must not reset credentials)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from common.config import Settings, load_settings
from common.errors import ConfigError, InvalidArgumentError
from common.service_host import LIVENESS_SERVICE_NAME, ServiceDefinition
from common.services import SERVICES
from cts.archive import parse_age

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "k8s" / "crypto-trading-system-final.yaml"
SECRETS_EXAMPLE = ROOT / "k8s" / "secrets.example.yaml"
NAMESPACE = "crypto-trading"
# The Kubernetes names the operators' runbook uses (issue 8), by service name, from the registry. Everything else
# (ports, health names, settings) comes from the code.
KUBERNETES_NAMES = {info.name: info.kubernetes_name for info in SERVICES}
NON_ROOT_UID = 10001
MODEL_DIR_IN_IMAGE = "/app/models"
# The existing MySQL server the guide's deployment uses, behind the selector-less Service "mysql".
DATABASE_SERVICE = "mysql"
DATABASE_ADDRESS = "172.22.32.1"
DATABASE_PORT = 3306

Doc = dict[str, Any]


def load_documents(path: Path = MANIFEST) -> list[Doc]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def definitions() -> dict[str, ServiceDefinition]:
    """The four service definitions, imported from the services' own server modules."""
    found: dict[str, ServiceDefinition] = {}
    for info in SERVICES:
        definition = importlib.import_module(f"{info.package}.server").DEFINITION
        assert isinstance(definition, ServiceDefinition)
        found[definition.name] = definition
    return found


def setting_default(field: str) -> Any:
    return Settings.model_fields[field].default


def env_var_names() -> set[str]:
    """Every environment variable the services read: the Settings fields, upper-cased."""
    return {name.upper() for name in Settings.model_fields}


def find(documents: Iterable[Doc], kind: str, name: str) -> Doc | None:
    for doc in documents:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    return None


def pod_spec(doc: Doc) -> Doc:
    """The pod template's spec of a Deployment, Job or CronJob ({} for anything else)."""
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    elif doc.get("kind") not in ("Deployment", "Job"):
        return {}
    pod: Doc = (spec.get("template") or {}).get("spec") or {}
    return pod


def _selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in (selector or {}).items())


def _port_number(value: object, named: Mapping[str, int]) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return named.get(value)
    return None


class _Checker:
    def __init__(self, documents: list[Doc], secrets: list[Doc]) -> None:
        self.docs = documents
        self.secrets = secrets
        self.problems: list[str] = []
        self.definitions = definitions()

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # --- the pieces -------------------------------------------------------------------------------------------

    def config_data(self, kind: str, name: str, where: str) -> dict[str, str]:
        doc = find(self.secrets if kind == "Secret" else self.docs, kind, name)
        if doc is None:
            self.problem(f"{where}: references {kind} {name!r}, which the manifest does not define")
            return {}
        data = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
        return {str(key): str(value) for key, value in data.items()}

    def container_environment(self, container: Doc, where: str) -> dict[str, str]:
        """The environment a container gets from envFrom and env, as the process would see it."""
        environ: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                environ.update(self.config_data("ConfigMap", source["configMapRef"]["name"], where))
            elif "secretRef" in source:
                environ.update(self.config_data("Secret", source["secretRef"]["name"], where))
        for entry in container.get("env") or []:
            if "value" in entry:
                environ[entry["name"]] = str(entry["value"])
            elif "valueFrom" in entry:
                ref = entry["valueFrom"].get("secretKeyRef") or entry["valueFrom"].get("configMapKeyRef")
                kind = "Secret" if "secretKeyRef" in entry["valueFrom"] else "ConfigMap"
                data = self.config_data(kind, ref["name"], where) if ref else {}
                if ref and ref["key"] in data:
                    environ[entry["name"]] = data[ref["key"]]
                else:
                    self.problem(f"{where}: env {entry['name']} refers to a missing key")
        unknown = sorted(set(environ) - env_var_names())
        if unknown:
            self.problem(f"{where}: env vars that are not Settings fields: {', '.join(unknown)}")
        return {key: value for key, value in environ.items() if key not in unknown}

    def settings_for(self, environ: Mapping[str, str], where: str) -> Settings | None:
        try:
            return load_settings(environ)
        except ConfigError as exc:
            self.problem(f"{where}: the environment does not load as Settings: {exc}")
            return None

    def check_pod_security(self, pod: Doc, where: str) -> None:
        pod_security = pod.get("securityContext") or {}
        if pod_security.get("runAsNonRoot") is not True or pod_security.get("runAsUser") != NON_ROOT_UID:
            self.problem(f"{where}: pod must set runAsNonRoot: true and runAsUser: {NON_ROOT_UID}")
        if pod.get("enableServiceLinks") is not False:
            # Service links inject e.g. SIGNAL_BRIDGE_PORT=tcp://10.0.0.7:8022, which collides with the port settings.
            self.problem(f"{where}: enableServiceLinks must be false (service link env vars collide with Settings)")
        mounted_tmp = False
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            security = container.get("securityContext") or {}
            seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
            if (
                security.get("readOnlyRootFilesystem") is not True
                or security.get("allowPrivilegeEscalation") is not False
                or "ALL" not in ((security.get("capabilities") or {}).get("drop") or [])
                or seccomp != "RuntimeDefault"
            ):
                self.problem(
                    f"{where}: container {container.get('name')} must be read-only, without privilege escalation, "
                    "with all capabilities dropped and the RuntimeDefault seccomp profile"
                )
            resources = container.get("resources") or {}
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(kind) or {}):
                    self.problem(f"{where}: container {container.get('name')} needs cpu and memory {kind}")
            volumes = {v["name"]: v for v in pod.get("volumes") or []}
            for mount in container.get("volumeMounts") or []:
                if mount.get("mountPath") == "/tmp" and "emptyDir" in volumes.get(mount.get("name"), {}):
                    mounted_tmp = True
        if not mounted_tmp:
            self.problem(f"{where}: /tmp must be an emptyDir (the root filesystem is read-only)")

    def check_service(self, definition: ServiceDefinition) -> None:
        k8s_name = KUBERNETES_NAMES[definition.name]
        where = f"Deployment {k8s_name}"
        deployment = find(self.docs, "Deployment", k8s_name)
        if deployment is None:
            self.problem(f"no Deployment {k8s_name!r} for the {definition.name} service")
            return
        spec = deployment.get("spec") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        pod = template.get("spec") or {}
        if not _selector_matches((spec.get("selector") or {}).get("matchLabels"), labels):
            self.problem(f"{where}: selector does not match the pod labels")
        self.check_pod_security(pod, where)
        containers = pod.get("containers") or []
        if len(containers) != 1:
            self.problem(f"{where}: expected exactly one container")
            return
        container = containers[0]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if command not in (["cts", "serve", definition.name], ["python", "-m", f"{definition.name}_svc"]):
            self.problem(f"{where}: command {command} does not start the {definition.name} service")

        environ = self.container_environment(container, where)
        settings = self.settings_for(environ, where)
        if settings is None:
            return
        port, metrics_port = definition.port(settings), definition.metrics_port(settings)
        default_port = setting_default(definition.port_setting)
        default_metrics = setting_default(definition.metrics_port_setting)
        if port != default_port:
            self.problem(f"{where}: {definition.port_setting.upper()} is {port}, the code default is {default_port}")
        if metrics_port != default_metrics:
            self.problem(
                f"{where}: {definition.metrics_port_setting.upper()} is {metrics_port}, "
                f"the code default is {default_metrics}"
            )
        named_ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        if named_ports.get("grpc") != port:
            self.problem(f"{where}: container port 'grpc' is {named_ports.get('grpc')}, the service listens on {port}")
        if named_ports.get("metrics") != metrics_port:
            self.problem(
                f"{where}: container port 'metrics' is {named_ports.get('metrics')}, metrics are on {metrics_port}"
            )
        if annotations.get("prometheus.io/port") != str(metrics_port) or annotations.get("prometheus.io/scrape") != (
            "true"
        ):
            self.problem(f"{where}: prometheus.io annotations must scrape port {metrics_port}")

        for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            grpc_probe = (container.get(probe_kind) or {}).get("grpc")
            if not grpc_probe:
                self.problem(f"{where}: {probe_kind} must be a native gRPC probe")
                continue
            if grpc_probe.get("port") != port:
                self.problem(f"{where}: {probe_kind} probes port {grpc_probe.get('port')}, the service is on {port}")
            service = grpc_probe.get("service") or ""
            # Liveness (and start-up, which gates it) must not depend on the database or Coinbase: a restart
            # fixes neither. The liveness name is SERVING while the process runs; readiness follows dependencies.
            allowed = {
                "readinessProbe": {definition.full_service_name},
                "livenessProbe": {LIVENESS_SERVICE_NAME},
                "startupProbe": {LIVENESS_SERVICE_NAME},
            }[probe_kind]
            if service not in allowed:
                self.problem(f"{where}: {probe_kind} asks for health of {service!r}, expected one of {sorted(allowed)}")

        grace = pod.get("terminationGracePeriodSeconds", 30)
        if not grace > settings.shutdown_grace_seconds:
            self.problem(
                f"{where}: terminationGracePeriodSeconds {grace} must exceed SHUTDOWN_GRACE_SECONDS "
                f"{settings.shutdown_grace_seconds}"
            )
        self.check_addresses(settings, where)
        self.check_kubernetes_service(definition, labels, named_ports)

    def check_kubernetes_service(
        self, definition: ServiceDefinition, pod_labels: Mapping[str, str], named_ports: Mapping[str, int]
    ) -> None:
        k8s_name = KUBERNETES_NAMES[definition.name]
        where = f"Service {k8s_name}"
        service = find(self.docs, "Service", k8s_name)
        if service is None:
            self.problem(f"no Service {k8s_name!r} for the {definition.name} service")
            return
        spec = service.get("spec") or {}
        if spec.get("type", "ClusterIP") != "ClusterIP":
            self.problem(f"{where}: must be a ClusterIP Service")
        if not _selector_matches(spec.get("selector"), pod_labels):
            self.problem(f"{where}: selector does not select the {definition.name} pods")
        ports = {p.get("name"): p for p in spec.get("ports") or []}
        expected = {
            "grpc": setting_default(definition.port_setting),
            "metrics": setting_default(definition.metrics_port_setting),
        }
        for name, number in expected.items():
            entry = ports.get(name)
            if entry is None:
                self.problem(f"{where}: no port named {name!r}")
                continue
            if entry.get("port") != number:
                self.problem(f"{where}: port {name!r} is {entry.get('port')}, expected {number}")
            target = _port_number(entry.get("targetPort", entry.get("port")), named_ports)
            if target != number:
                self.problem(f"{where}: port {name!r} targets {entry.get('targetPort')}, the container has {number}")

    def check_addresses(self, settings: Settings, where: str) -> None:
        """Every *_ADDR must name the Kubernetes Service (and port) of the service it points at."""
        by_port_setting = {d.port_setting: d for d in self.definitions.values()}
        for field in Settings.model_fields:
            if not field.endswith("_addr"):
                continue
            target = by_port_setting.get(field.removesuffix("_addr") + "_port")
            if target is None:
                self.problem(f"Settings field {field} does not correspond to any service's port setting")
                continue
            k8s_name = KUBERNETES_NAMES[target.name]
            value: str = getattr(settings, field)
            host, _, port = value.rpartition(":")
            hosts = {
                k8s_name,
                f"{k8s_name}.{NAMESPACE}",
                f"{k8s_name}.{NAMESPACE}.svc",
                f"{k8s_name}.{NAMESPACE}.svc.cluster.local",
            }
            expected_port = setting_default(target.port_setting)
            if host not in hosts or port != str(expected_port):
                self.problem(f"{where}: {field.upper()}={value!r} must be {k8s_name}:{expected_port}")

    def check_network_policy(self) -> None:
        executor = self.definitions["executor"]
        orchestrator = self.definitions["orchestrator"]
        executor_labels = self.pod_labels(executor)
        orchestrator_labels = self.pod_labels(orchestrator)
        grpc_port = setting_default(executor.port_setting)
        metrics_port = setting_default(executor.metrics_port_setting)
        policies = [
            doc
            for doc in self.docs
            if doc.get("kind") == "NetworkPolicy"
            and _selector_matches(
                ((doc.get("spec") or {}).get("podSelector") or {}).get("matchLabels"), executor_labels
            )
        ]
        if not policies:
            self.problem("no NetworkPolicy selects the trade-executor pods")
            return
        orchestrator_allowed = False
        for policy in policies:
            spec = policy["spec"]
            if "Ingress" not in (spec.get("policyTypes") or []):
                self.problem(f"NetworkPolicy {policy['metadata']['name']}: must restrict Ingress")
            for rule in spec.get("ingress") or []:
                ports = [p.get("port") for p in rule.get("ports") or []]
                unknown = [p for p in ports if p not in (grpc_port, metrics_port, "grpc", "metrics")]
                if unknown:
                    self.problem(
                        f"NetworkPolicy {policy['metadata']['name']}: ports {unknown} are not the executor's gRPC "
                        f"({grpc_port}) or metrics ({metrics_port}) port"
                    )
                reaches_grpc = not ports or grpc_port in ports or "grpc" in ports
                if not reaches_grpc:
                    continue
                peers = rule.get("from") or []
                only_orchestrator = bool(peers) and all(
                    set(peer) == {"podSelector"}
                    and _selector_matches((peer["podSelector"] or {}).get("matchLabels"), orchestrator_labels)
                    for peer in peers
                )
                if only_orchestrator:
                    orchestrator_allowed = True
                else:
                    self.problem(
                        f"NetworkPolicy {policy['metadata']['name']}: a rule opens the executor's gRPC port "
                        f"{grpc_port} to more than the trade-orchestrator pods"
                    )
        if not orchestrator_allowed:
            self.problem(f"no NetworkPolicy rule lets the trade-orchestrator pods reach the executor on {grpc_port}")

    def pod_labels(self, definition: ServiceDefinition) -> dict[str, str]:
        deployment = find(self.docs, "Deployment", KUBERNETES_NAMES[definition.name]) or {}
        labels = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")
        return dict(labels or {})

    def check_migration_job(self) -> None:
        job = find(self.docs, "Job", "db-migrate")
        if job is None:
            self.problem("no Job 'db-migrate'")
            return
        pod = job["spec"]["template"]["spec"]
        self.check_pod_security(pod, "Job db-migrate")
        container = pod["containers"][0]
        if [*(container.get("command") or []), *(container.get("args") or [])] != ["cts", "migrate"]:
            self.problem("Job db-migrate: must run `cts migrate`")
        settings = self.settings_for(self.container_environment(container, "Job db-migrate"), "Job db-migrate")
        if settings is not None and not settings.is_mysql:
            self.problem("Job db-migrate: DATABASE_URL must be a MySQL URL")

    def check_production_values(self) -> None:
        """What production needs from the template: MySQL, Coinbase market data, the baked-in model, paper by
        default, one image, and Secrets that hold placeholders only."""
        environments: dict[str, dict[str, str]] = {}
        images = set()
        for doc in self.docs:
            pod = pod_spec(doc)
            for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
                images.add(container.get("image"))
        if len(images) != 1:
            self.problem(f"every workload must run the same image, found {sorted(map(str, images))}")
        for name, k8s_name in KUBERNETES_NAMES.items():
            deployment = find(self.docs, "Deployment", k8s_name)
            if deployment is not None:
                container = deployment["spec"]["template"]["spec"]["containers"][0]
                environments[name] = self.container_environment(container, f"Deployment {k8s_name}")
        for name, environ in environments.items():
            if not environ.get("DATABASE_URL", "").startswith("mysql+asyncmy://"):
                self.problem(f"{KUBERNETES_NAMES[name]}: DATABASE_URL must come from the database Secret (MySQL)")
        generator = environments.get("generator", {})
        if generator.get("MARKET_DATA_SOURCE") != "coinbase" or generator.get("MODEL_DIR") != MODEL_DIR_IN_IMAGE:
            self.problem(f"signal-generator: needs MARKET_DATA_SOURCE=coinbase and MODEL_DIR={MODEL_DIR_IN_IMAGE}")
        executor = environments.get("executor", {})
        if executor.get("EXECUTION_MODE") != "paper":
            self.problem("trade-executor: the template must set EXECUTION_MODE=paper (live is an explicit change)")
        for name, environ in environments.items():
            if name != "executor" and any(key.startswith("COINBASE_API_") and "KEY" in key for key in environ):
                self.problem(f"{KUBERNETES_NAMES[name]}: only the executor may get the Coinbase key")
        for doc in self.secrets:
            if doc.get("kind") == "Secret":
                values = {**(doc.get("stringData") or {}), **(doc.get("data") or {})}
                for key, value in values.items():
                    if "REPLACE_ME" not in str(value):
                        self.problem(f"Secret {doc['metadata']['name']}: {key} must be a REPLACE_ME placeholder")

    def check_namespace(self) -> None:
        if find(self.docs, "Namespace", NAMESPACE) is None:
            self.problem(f"no Namespace {NAMESPACE!r}")
        for doc in [*self.docs, *self.secrets]:
            if doc.get("kind") != "Namespace" and doc.get("metadata", {}).get("namespace") != NAMESPACE:
                self.problem(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: not in namespace {NAMESPACE}")

    def check_no_secrets(self) -> None:
        for doc in self.docs:
            if doc.get("kind") == "Secret":
                self.problem(
                    f"Secret {doc['metadata']['name']}: must not be in the manifest (re-applying it would reset "
                    "credentials); it belongs in k8s/secrets.example.yaml"
                )
        for doc in self.secrets:
            if doc.get("kind") != "Secret":
                self.problem(f"k8s/secrets.example.yaml: {doc.get('kind')} is not a Secret")

    def check_database_service(self) -> None:
        """DATABASE_URL names the selector-less Service "mysql", whose EndpointSlice points at the MySQL server."""
        url = self.config_data("Secret", "crypto-trading-database", "database Secret").get("DATABASE_URL", "")
        host_port = url.rpartition("@")[2].partition("/")[0]
        host, _, port = host_port.partition(":")
        hosts = {DATABASE_SERVICE, f"{DATABASE_SERVICE}.{NAMESPACE}", f"{DATABASE_SERVICE}.{NAMESPACE}.svc"}
        if host not in hosts | {f"{DATABASE_SERVICE}.{NAMESPACE}.svc.cluster.local"} or port != str(DATABASE_PORT):
            self.problem(f"DATABASE_URL must reach the database as {DATABASE_SERVICE}:{DATABASE_PORT}, not {host_port}")
        service = find(self.docs, "Service", DATABASE_SERVICE)
        if service is None:
            self.problem(f"no Service {DATABASE_SERVICE!r} for the database")
            return
        spec = service.get("spec") or {}
        if spec.get("selector"):
            self.problem(f"Service {DATABASE_SERVICE}: must have no selector (its endpoints are the external server)")
        ports = spec.get("ports") or []
        service_port = next((p for p in ports if p.get("port") == DATABASE_PORT), None)
        if service_port is None:
            self.problem(f"Service {DATABASE_SERVICE}: no port {DATABASE_PORT}")
            return
        slices = [
            doc
            for doc in self.docs
            if doc.get("kind") == "EndpointSlice"
            and ((doc.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") == DATABASE_SERVICE
        ]
        if not slices:
            self.problem(f"no EndpointSlice labelled kubernetes.io/service-name: {DATABASE_SERVICE}")
        for endpoint_slice in slices:
            where = f"EndpointSlice {endpoint_slice['metadata']['name']}"
            slice_ports = {(p.get("name"), p.get("port")) for p in endpoint_slice.get("ports") or []}
            target = service_port.get("targetPort", DATABASE_PORT)
            if (service_port.get("name"), target) not in slice_ports:
                self.problem(f"{where}: needs port {service_port.get('name')!r} {target} (the Service's target port)")
            addresses = [a for e in endpoint_slice.get("endpoints") or [] for a in e.get("addresses") or []]
            if addresses != [DATABASE_ADDRESS]:
                self.problem(f"{where}: addresses {addresses}, the database is at {DATABASE_ADDRESS}")

    def check_models_volume(self) -> None:
        """/app/models (MODEL_DIR) is a PersistentVolumeClaim, seeded by an init container from the image."""
        deployment = find(self.docs, "Deployment", KUBERNETES_NAMES["generator"])
        if deployment is None:
            return
        where = f"Deployment {KUBERNETES_NAMES['generator']}"
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        container = pod["containers"][0]
        mount = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == MODEL_DIR_IN_IMAGE), None)
        claim = ((volumes.get(mount["name"]) or {}) if mount else {}).get("persistentVolumeClaim") or {}
        if mount is None or not claim:
            self.problem(f"{where}: {MODEL_DIR_IN_IMAGE} must be a PersistentVolumeClaim volume")
            return
        if mount.get("readOnly"):
            self.problem(f"{where}: {MODEL_DIR_IN_IMAGE} must be writable (new models are copied in)")
        if find(self.docs, "PersistentVolumeClaim", claim.get("claimName", "")) is None:
            self.problem(f"{where}: PersistentVolumeClaim {claim.get('claimName')!r} is not in the manifest")
        if (deployment["spec"].get("strategy") or {}).get("type") != "Recreate":
            self.problem(f"{where}: a ReadWriteOnce models volume needs the Recreate strategy")
        seeders = [
            init
            for init in pod.get("initContainers") or []
            for m in init.get("volumeMounts") or []
            if m.get("name") == mount["name"]
        ]
        if len(seeders) != 1:
            self.problem(f"{where}: exactly one init container must seed the models volume")
            return
        seeder = seeders[0]
        seed_path = next(m["mountPath"] for m in seeder["volumeMounts"] if m.get("name") == mount["name"])
        if seed_path == MODEL_DIR_IN_IMAGE or seeder.get("args") != [MODEL_DIR_IN_IMAGE, seed_path]:
            self.problem(
                f"{where}: init container {seeder.get('name')} must copy from the image's {MODEL_DIR_IN_IMAGE} "
                f"to the volume mounted elsewhere (args [{MODEL_DIR_IN_IMAGE!r}, <its mount path>])"
            )
        if seeder.get("image") != container.get("image"):
            self.problem(f"{where}: the init container must run the generator's image (it holds the model)")

    def check_archive_cronjob(self) -> None:
        cronjob = find(self.docs, "CronJob", "db-archive")
        if cronjob is None:
            self.problem("no CronJob 'db-archive' running cts archive")
            return
        spec = cronjob["spec"]
        if spec.get("concurrencyPolicy") != "Forbid":
            self.problem("CronJob db-archive: concurrencyPolicy must be Forbid (never two archive runs at once)")
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        self.check_pod_security(pod, "CronJob db-archive")
        container = pod["containers"][0]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if command[:2] != ["cts", "archive"] or "--older-than" not in command[:-1]:
            self.problem(f"CronJob db-archive: must run `cts archive --older-than <age>`, runs {command}")
        else:
            age = command[command.index("--older-than") + 1]
            try:
                parse_age(age)
            except InvalidArgumentError as exc:
                self.problem(f"CronJob db-archive: {exc}")
        settings = self.settings_for(self.container_environment(container, "CronJob db-archive"), "CronJob db-archive")
        if settings is not None and not settings.is_mysql:
            self.problem("CronJob db-archive: DATABASE_URL must be a MySQL URL")

    def run(self) -> list[str]:
        self.check_namespace()
        self.check_no_secrets()
        for definition in self.definitions.values():
            self.check_service(definition)
        self.check_network_policy()
        self.check_migration_job()
        self.check_archive_cronjob()
        self.check_database_service()
        self.check_models_volume()
        self.check_production_values()
        return list(dict.fromkeys(self.problems))


def manifest_problems(documents: list[Doc], secrets: list[Doc] | None = None) -> list[str]:
    """Every disagreement between the manifest (and the Secrets template) and the code, one line each (empty:
    consistent)."""
    return _Checker(documents, load_documents(SECRETS_EXAMPLE) if secrets is None else secrets).run()
