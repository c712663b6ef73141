"""Hermetic test setup: no network, no user state, no token. Tiny real models, built once."""

from __future__ import annotations

import os

# Set before huggingface_hub / transformers / gradio are imported anywhere: they read these
# at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
    os.environ.pop(_var, None)
# Session-wide state for fixtures wider than one test (each test also gets its own, below):
# nothing a test does may touch the user's ~/.cache/hubkit or ~/.cache/huggingface.
import tempfile as _tempfile

_SESSION_STATE = _tempfile.mkdtemp(prefix="hubkit-tests-")
os.environ["HUBKIT_HOME"] = os.path.join(_SESSION_STATE, "hubkit")
os.environ["HF_HOME"] = os.path.join(_SESSION_STATE, "hf")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_STATE, "datasets")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Every test gets its own HF_HOME, caches and hubkit state, and no token."""
    home = tmp_path / "_state"
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HUBKIT_HOME", str(home / "hubkit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUBKIT_DEBUG", raising=False)
    yield


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    """The demo world (tokenizer, tiny Mistral, two trained adapters, task, manifest), built once."""
    from hubkit.demo.world import build_world, cached_world

    dest = tmp_path_factory.mktemp("demo") / "world"
    # `make test` keeps built worlds in .venv (HUBKIT_TEST_WORLD_CACHE): a world depends only
    # on code and library versions, and building one trains three models
    cache = os.environ.get("HUBKIT_TEST_WORLD_CACHE")
    return cached_world(dest, cache) if cache else build_world(dest)
