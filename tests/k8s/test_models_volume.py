"""The generator's models volume: the manifest's init container, run here with sh on directories that stand in for
the image's /app/models and the PersistentVolumeClaim. It seeds an empty volume with a model the generator loads,
and never touches a volume that already holds a model."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from generator_svc.model_store import load_model
from tests.k8s.manifest_checker import MODEL_DIR_IN_IMAGE, ROOT, find, load_documents

MODELS = ROOT / "models"
pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")


def _seeder() -> dict[str, Any]:
    deployment = find(load_documents(), "Deployment", "signal-generator")
    assert deployment is not None
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][0] == MODEL_DIR_IN_IMAGE
    return dict(init)


def seed(source: Path, volume: Path) -> subprocess.CompletedProcess[str]:
    """The init container's command with its two arguments (image models, volume) pointed at ``source``/``volume``."""
    init = _seeder()
    return subprocess.run(
        [*init["command"], str(source), str(volume)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def image_models(tmp_path: Path) -> Path:
    source = tmp_path / "image" / "app" / "models"
    source.mkdir(parents=True)
    for path in MODELS.iterdir():
        if path.suffix in (".joblib", ".json"):
            shutil.copy(path, source / path.name)
    assert any(source.glob("*.joblib"))
    assert any(source.glob("*.json"))
    return source


def test_an_empty_volume_is_seeded_with_the_image_model(image_models: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)  # what a fresh ext4 volume holds: still "no model"
    result = seed(image_models, volume)
    assert result.returncode == 0, result.stderr
    assert "copied the image's model" in result.stdout
    for path in image_models.iterdir():
        assert filecmp.cmp(path, volume / path.name, shallow=False), path.name
    assert sorted(p.name for p in volume.iterdir()) == sorted([*(p.name for p in image_models.iterdir()), "lost+found"])
    loaded = load_model(volume)  # the generator's own loader: SHA-256 against the card, features, booster
    assert loaded is not None


def test_a_volume_with_a_model_is_never_overwritten(image_models: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    newer = volume / "balanced_realistic_model_20991231_000000.joblib"
    newer.write_bytes(b"the operator's model")
    (volume / "balanced_realistic_model_20991231_000000.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in volume.iterdir()}
    result = seed(image_models, volume)
    assert result.returncode == 0, result.stderr
    assert "already holds a model" in result.stdout
    assert {p.name: p.read_bytes() for p in volume.iterdir()} == before


def test_an_image_without_a_model_fails_the_pod_start(tmp_path: Path) -> None:
    source, volume = tmp_path / "empty", tmp_path / "volume"
    source.mkdir()
    volume.mkdir()
    result = seed(source, volume)
    assert result.returncode == 1
    assert "no *.json in" in result.stderr
    assert list(volume.iterdir()) == []
