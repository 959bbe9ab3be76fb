"""The operators' commands in docs/kubernetes.md and in the README's runbook, checked against the manifest and the
code: every `kubectl` command names the manifest's namespace, objects, containers, labels, ports, files and paths;
`cts` commands run in a pod parse; log greps match a log line of that service's code; and the model update copies
the model and its card into the generator's models volume, restarts the generator and greps the loader's line."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cts.main import build_parser
from generator_svc.model_store import MODEL_PATTERN
from tests.k8s.manifest_checker import (
    KUBERNETES_NAMES,
    MODEL_DIR_IN_IMAGE,
    NAMESPACE,
    ROOT,
    SECRETS_EXAMPLE,
    Doc,
    find,
    load_documents,
    pod_spec,
)

GUIDE = ROOT / "docs" / "kubernetes.md"
README = ROOT / "README.md"
KINDS = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "svc": "Service",
    "service": "Service",
    "job": "Job",
    "cronjob": "CronJob",
    "pvc": "PersistentVolumeClaim",
    "endpointslice": "EndpointSlice",
    "secret": "Secret",
    "configmap": "ConfigMap",
    "cm": "ConfigMap",
}
NAMESPACED_VERBS = {
    "get",
    "describe",
    "logs",
    "exec",
    "cp",
    "rollout",
    "port-forward",
    "scale",
    "wait",
    "patch",
    "delete",
    "create",
}
_FLAGS_WITH_VALUE = {"-n", "--namespace", "-c", "--container", "-l", "--selector", "-f", "--filename", "-o", "-p"}
_FLAGS_WITH_VALUE |= {"--type", "--from", "--from-literal", "--from-file", "--timeout", "--replicas", "--for"}


@dataclass
class Command:
    """One `kubectl ...` invocation (tokens after `kubectl`), with what follows it in its pipeline."""

    source: str
    tokens: list[str]
    piped_to: list[list[str]] = field(default_factory=list)
    assigned_to: str | None = None

    def option(self, *names: str) -> str | None:
        """The value of a kubectl option (not of the command after `--`)."""
        own = self.tokens[: self.tokens.index("--")] if "--" in self.tokens else self.tokens
        for i, token in enumerate(own):
            for name in names:
                if token == name and i + 1 < len(own):
                    return own[i + 1]
                if name.startswith("--") and token.startswith(name + "="):
                    return token.split("=", 1)[1]
        return None

    def positionals(self) -> list[str]:
        """The words that are not options (nor option values), up to `--`."""
        words: list[str] = []
        skip = False
        for token in self.tokens:
            if token == "--":
                break
            if skip:
                skip = False
                continue
            if token in _FLAGS_WITH_VALUE:
                skip = True
                continue
            if token.startswith("-"):
                continue
            words.append(token)
        return words

    def after_double_dash(self) -> list[str]:
        return self.tokens[self.tokens.index("--") + 1 :] if "--" in self.tokens else []


def _shell_lines(markdown: str) -> list[str]:
    """Shell lines from ```sh blocks (continuations joined) and inline `kubectl ...` code spans."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        joined = block.replace("\\\n", " ")
        lines += [line.split(" # ")[0] for line in joined.splitlines() if line.strip()]
    outside = re.sub(r"```.*?```", "", markdown, flags=re.S)
    # Inline commands; a bare `kubectl cp` or `kubectl exec` is a mention, not a command.
    lines += [span for span in re.findall(r"`(kubectl [^`]+)`", outside) if len(span.split()) > 2]
    return lines


def parse_commands(markdown: str, source: str) -> list[Command]:
    commands: list[Command] = []
    for line in _shell_lines(markdown):
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;()")
        lexer.whitespace_split = True
        tokens = list(lexer)
        current: Command | None = None
        pipeline: list[Command] = []
        assignment = None
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token in ("|", "||", "&&", ";", "&", ")", "(") or token.endswith("$"):
                if token.endswith("$") and "=" in token:
                    assignment = token.split("=", 1)[0]
                if token != "|":
                    pipeline = []
                current = None
                i += 1
                continue
            if token == "kubectl":
                current = Command(source, [], assigned_to=assignment)
                assignment = None
                commands.append(current)
                pipeline = [current]
            elif current is not None:
                current.tokens.append(token)
            elif pipeline:
                piped = [token]
                while i + 1 < len(tokens) and tokens[i + 1] not in ("|", "&&", ";", "&", ")"):
                    i += 1
                    piped.append(tokens[i])
                pipeline[0].piped_to.append(piped)
            i += 1
    return commands


def guide_commands() -> list[Command]:
    return parse_commands(GUIDE.read_text(), "docs/kubernetes.md")


def runbook_commands() -> list[Command]:
    readme = README.read_text()
    start = readme.index("## Operations runbook")
    end = readme.find("\n## ", start + 1)
    return parse_commands(readme[start : end if end > 0 else None], "README runbook")


def _pod_labels(doc: Doc) -> dict[str, str]:
    if doc.get("kind") != "Deployment":
        return {}
    return dict(doc["spec"]["template"]["metadata"].get("labels") or {})


class Checker:
    def __init__(self, commands: list[Command]) -> None:
        self.documents = load_documents()
        self.secrets = load_documents(SECRETS_EXAMPLE)
        self.objects = [*self.documents, *self.secrets]
        self.commands = commands
        self.pods: dict[str, Doc] = {}  # shell variable -> the Deployment whose pod it names
        self.created_jobs = {
            c.positionals()[2] for c in commands if c.positionals()[:2] == ["create", "job"] and c.option("--from")
        }
        self.problems: list[str] = []

    def problem(self, command: Command, text: str) -> None:
        self.problems.append(f"{command.source}: kubectl {' '.join(command.tokens)}: {text}")

    def object(self, kind: str, name: str) -> Doc | None:
        return find(self.objects, kind, name)

    def deployment_for_selector(self, selector: str) -> Doc | None:
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        for doc in self.documents:
            if wanted.items() <= _pod_labels(doc).items():
                return doc
        return None

    def check(self, command: Command) -> None:
        words = command.positionals()
        verb = words[0] if words else ""
        namespace = command.option("-n", "--namespace")
        needs_namespace = verb in NAMESPACED_VERBS and not (verb == "create" and words[1:2] == ["namespace"])
        if namespace is not None and namespace != NAMESPACE:
            self.problem(command, f"namespace {namespace!r} is not {NAMESPACE!r}")
        if needs_namespace and namespace is None:
            self.problem(command, "no -n/--namespace (the manifest's objects are all in a namespace)")
        if verb == "create" and words[1:2] == ["namespace"] and words[2:3] != [NAMESPACE]:
            self.problem(command, f"creates namespace {words[2:3]}, not {NAMESPACE!r}")
        filename = command.option("-f", "--filename")
        if filename and filename != "-" and not filename.startswith(("~", "<")) and not (ROOT / filename).exists():
            self.problem(command, f"no file {filename} in the repository")
        deployment = self.check_references(command, words)
        selector = command.option("-l", "--selector")
        if selector:
            labelled = self.deployment_for_selector(selector)
            labelled_objects = [
                doc
                for doc in self.objects
                if dict(part.split("=", 1) for part in selector.split(",")).items()
                <= ((doc.get("metadata") or {}).get("labels") or {}).items()
            ]
            if labelled is None and not labelled_objects:
                self.problem(command, f"selector {selector} matches nothing in the manifest")
            if command.assigned_to and labelled is not None:
                self.pods[command.assigned_to] = labelled
        if deployment is None:
            pod_variable = next(
                (w.strip('"$').split(":")[0] for w in words if w.lstrip('"').startswith("$")),
                None,
            )
            deployment = self.pods.get(pod_variable.strip('"${}') if pod_variable else "")
        container = command.option("-c", "--container")
        if container is not None:
            pod = pod_spec(deployment) if deployment else {}
            names = [c["name"] for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]]
            if container not in names:
                self.problem(command, f"container {container!r} is not in {names or 'the pod it names'}")
        if verb == "cp":
            self.check_copy(command, words, deployment, container)
        if verb == "port-forward":
            self.check_port_forward(command, words)
        if verb == "exec":
            self.check_exec(command)
        if verb == "logs":
            self.check_log_greps(command, words)

    def check_references(self, command: Command, words: list[str]) -> Doc | None:
        deployment = None
        for word in words:
            kind_word, slash, name = word.partition("/")
            if not slash or kind_word not in KINDS or "<" in name:  # <name>: a placeholder the reader fills in
                continue
            kind = KINDS[kind_word]
            if kind == "Job" and name in self.created_jobs:
                continue
            doc = self.object(kind, name)
            if doc is None:
                self.problem(command, f"no {kind} {name!r} in the manifest or the Secrets template")
            elif kind == "Deployment":
                deployment = doc
        verb = words[0] if words else ""
        if verb in ("get", "patch", "delete", "describe") and len(words) >= 3 and "," not in words[1]:
            listed = KINDS.get(words[1])
            if listed is not None and "/" not in words[2] and self.object(listed, words[2]) is None:
                self.problem(command, f"no {listed} {words[2]!r} in the manifest")
        if words[:3] == ["create", "secret", "generic"] and "<" not in "".join(words[3:4]):
            name = words[3] if len(words) > 3 else ""
            # A Secret of the template, or one the guide's own YAML mounts (the TLS example).
            if self.object("Secret", name) is None and f"secretName: {name}" not in GUIDE.read_text():
                self.problem(command, f"creates Secret {name!r}, which no workload uses")
        if words[:2] == ["create", "job"]:
            source = (command.option("--from") or "").partition("/")
            if source[0] != "cronjob" or self.object("CronJob", source[2]) is None:
                self.problem(command, f"--from={command.option('--from')} is not a CronJob of the manifest")
        return deployment

    def check_copy(self, command: Command, words: list[str], deployment: Doc | None, container: str | None) -> None:
        if len(words) < 3:
            self.problem(command, "kubectl cp needs a source and <pod>:<path>")
            return
        source, destination = words[1], words[2]
        path = destination.split(":", 1)[1] if ":" in destination else ""
        if deployment is None or container is None or not path:
            self.problem(command, "kubectl cp needs <pod>:<path> of a known Deployment's pod and -c <container>")
            return
        pod = pod_spec(deployment)
        containers: list[Doc] = [*pod["containers"], *(pod.get("initContainers") or [])]
        spec: Doc = next((c for c in containers if c["name"] == container), {})
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        directory = str(Path(path).parent) if Path(path).suffix else path.rstrip("/")
        mount = next((m for m in spec.get("volumeMounts") or [] if m["mountPath"] == directory), None)
        if mount is None or "persistentVolumeClaim" not in volumes.get(mount["name"], {}) or mount.get("readOnly"):
            self.problem(command, f"{directory} is not a writable PersistentVolumeClaim mount of {container}")
        if Path(path).suffix and Path(path).name != Path(source).name:
            self.problem(command, f"copies {Path(source).name} to a different name {Path(path).name}")

    def check_port_forward(self, command: Command, words: list[str]) -> None:
        kind_word, _, name = words[1].partition("/")
        doc = self.object(KINDS.get(kind_word, ""), name)
        if doc is None:
            return
        ports = {p["port"] for p in doc["spec"]["ports"]}
        for mapping in words[2:]:
            remote = int(mapping.split(":")[-1])
            if remote not in ports:
                self.problem(command, f"{words[1]} has no port {remote} (ports {sorted(ports)})")

    def check_exec(self, command: Command) -> None:
        inner = command.after_double_dash()
        if not inner:
            self.problem(command, "kubectl exec without `--` and a command")
            return
        if inner[0] == "cts":
            try:
                build_parser().parse_args(inner[1:])
            except SystemExit:
                self.problem(command, f"`{' '.join(inner)}` is not a valid cts command")

    def check_log_greps(self, command: Command, words: list[str]) -> None:
        target = next((w.partition("/")[2] for w in words if w.startswith("deployment/")), None)
        package = {k8s: name for name, k8s in KUBERNETES_NAMES.items()}.get(target or "")
        for piped in command.piped_to:
            if piped[0] != "grep" or package is None:
                continue
            pattern = re.compile(piped[-1])
            sources = "\n".join(p.read_text() for p in (ROOT / f"{package}_svc").glob("*.py"))
            sources += "\n" + (ROOT / "common" / "server.py").read_text()
            if not pattern.search(sources):
                self.problem(command, f"grep {piped[-1]!r}: no log line of {package}_svc matches")

    def run(self) -> list[str]:
        for command in self.commands:
            self.check(command)
        return self.problems


@pytest.mark.parametrize("commands", [guide_commands, runbook_commands], ids=["guide", "runbook"])
def test_every_kubectl_command_matches_the_manifest(commands: Any) -> None:
    found = commands()
    assert len(found) >= 5
    assert Checker(found).run() == []


def _model_update() -> list[Command]:
    text = GUIDE.read_text()
    start = text.index("## Update the model")
    return parse_commands(text[start : text.index("\n## ", start + 1)], "docs/kubernetes.md")


def test_the_model_update_copies_model_and_card_into_the_volume_and_checks_the_log() -> None:
    commands = _model_update()
    checker = Checker(commands)
    assert checker.run() == []
    generator = find(checker.documents, "Deployment", KUBERNETES_NAMES["generator"])
    assert generator is not None
    container = generator["spec"]["template"]["spec"]["containers"][0]["name"]
    copies = [c for c in commands if c.positionals()[:1] == ["cp"]]
    assert [Path(c.positionals()[1]).suffix for c in copies] == [".json", ".joblib"], "the card first, then the model"
    model = Path(copies[1].positionals()[1])
    assert MODEL_PATTERN.match(model.name), f"{model.name}: the generator would not pick it up"
    assert Path(copies[0].positionals()[1]).stem == model.stem, "the card belongs to the model"
    for copy in copies:
        assert copy.option("-c") == container
        destination = copy.positionals()[2].split(":", 1)[1]
        assert str(Path(destination).parent) == MODEL_DIR_IN_IMAGE
    # The pod the files go to is the generator's (the POD variable comes from its label selector).
    assert any(c.assigned_to == "POD" and checker.deployment_for_selector(c.option("-l") or "") for c in commands)
    verbs = [c.positionals()[:2] for c in commands]
    restart = verbs.index(["rollout", "restart"])
    assert restart > commands.index(copies[1])
    assert commands[restart].positionals()[2] == f"deployment/{KUBERNETES_NAMES['generator']}"
    logs = [c for c in commands[restart:] if c.positionals()[:1] == ["logs"] and c.piped_to]
    assert logs
    assert logs[0].positionals()[1] == f"deployment/{KUBERNETES_NAMES['generator']}"
    assert logs[0].piped_to == [["grep", "Loaded model"]]
    loader = (ROOT / "generator_svc" / "model_store.py").read_text()
    assert 'log.info("Loaded model %s sha256=%s features=%d", path.name' in loader


BROKEN = {
    "namespace": "kubectl -n trading get pods",
    "no namespace": "kubectl logs deployment/signal-generator",
    "deployment": "kubectl -n crypto-trading rollout restart deployment/generator",
    "container": 'kubectl -n crypto-trading cp m.json "$POD":/app/models/m.json -c generator',
    "path": 'kubectl -n crypto-trading cp m.json "$POD":/models/m.json -c signal-generator',
    "renamed file": 'kubectl -n crypto-trading cp m.json "$POD":/app/models/n.json -c signal-generator',
    "selector": "kubectl -n crypto-trading get pod -l app.kubernetes.io/name=generator",
    "service port": "kubectl -n crypto-trading port-forward svc/trade-executor 9025:9025",
    "cts command": "kubectl -n crypto-trading exec deployment/trade-executor -- cts healthz",
    "cts option": "kubectl -n crypto-trading exec deployment/trade-executor -- cts health --service exec",
    "log grep": 'kubectl -n crypto-trading logs deployment/signal-bridge | grep "Bridged signal"',
    "secret": "kubectl -n crypto-trading create secret generic database --from-literal=DATABASE_URL=x",
    "file": "kubectl apply -f k8s/crypto-trading.yaml",
    "cronjob": "kubectl -n crypto-trading create job --from=cronjob/archive run-now",
    "slice": "kubectl -n crypto-trading get endpointslice mysql",
}
POD_LINE = (
    "POD=$(kubectl -n crypto-trading get pod -l app.kubernetes.io/name=signal-generator "
    "-o jsonpath='{.items[0].metadata.name}')\n"
)


@pytest.mark.parametrize("name", list(BROKEN), ids=list(BROKEN))
def test_the_docs_check_catches_a_wrong_command(name: str) -> None:
    markdown = f"```sh\n{POD_LINE}{BROKEN[name]}\n```\n"
    assert Checker(parse_commands(markdown, "test")).run(), f"missed: {BROKEN[name]}"
    fine = f'```sh\n{POD_LINE}kubectl -n crypto-trading cp m.json "$POD":/app/models/m.json -c signal-generator\n```'
    assert Checker(parse_commands(fine, "test")).run() == []
