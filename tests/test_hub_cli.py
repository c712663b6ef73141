"""The genuine client's `hf` command line against the local hub, as its users run it: each call a
subprocess with HF_ENDPOINT and HF_HUB_DISABLE_XET=1 (huggingface_hub 2.4's CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hubkit.hub.server import LocalHub

TOKEN = "hf_" + "localTESTtoken0123456789abcdef"


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN, record=True) as h:
        yield h


def env_for(hub: LocalHub, tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"), NO_COLOR="1")
    return env


def hf(hub: LocalHub, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "huggingface_hub.cli.hf", *args], capture_output=True, text=True, env=env_for(hub, tmp_path), timeout=180)
    assert TOKEN not in proc.stdout + proc.stderr
    return proc


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args[3:]}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_hf_cli_create_upload_download_tags_branches(hub, tmp_path):
    folder = tmp_path / "up"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: peft\nbase_model: org/base\ntags: [hubkit, lora]\n---\n# card\n")
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "sub" / "notes.txt").write_text("notes\n")

    ok(hf(hub, tmp_path, "repos", "create", "me/cli-model", "--exist-ok"))
    # again: the Hub answers 409 and --exist-ok reads the repo's url from that answer
    ok(hf(hub, tmp_path, "repos", "create", "me/cli-model", "--exist-ok"))
    again = hf(hub, tmp_path, "repos", "create", "me/cli-model")
    assert again.returncode != 0 and "409" in again.stderr + again.stdout

    # `hf upload` creates the repo with exist_ok=True first: it must work on an existing repo
    ok(hf(hub, tmp_path, "upload", "me/cli-model", str(folder), ".", "--commit-message", "first"))
    ok(hf(hub, tmp_path, "upload", "me/cli-model", str(folder / "sub" / "notes.txt"), "extra/notes.txt"))
    ok(hf(hub, tmp_path, "repos", "tag", "create", "me/cli-model", "v1", "-m", "first release"))
    tags = ok(hf(hub, tmp_path, "repos", "tag", "list", "me/cli-model"))
    assert "v1" in tags.stdout
    ok(hf(hub, tmp_path, "repos", "branch", "create", "me/cli-model", "dev"))

    out = tmp_path / "down"
    ok(hf(hub, tmp_path, "download", "me/cli-model", "--local-dir", str(out)))
    for p in folder.rglob("*"):
        if p.is_file():
            assert (out / p.relative_to(folder)).read_bytes() == p.read_bytes(), p
    assert (out / "extra" / "notes.txt").read_text() == "notes\n"
    # one file at a tag
    one = ok(hf(hub, tmp_path, "download", "me/cli-model", "adapter_config.json", "--revision", "v1", "--local-dir", str(tmp_path / "one")))
    assert json.loads((tmp_path / "one" / "adapter_config.json").read_text()) == {"r": 8}, one.stdout

    info = json.loads(ok(hf(hub, tmp_path, "models", "info", "me/cli-model")).stdout)
    assert info["card_data"]["base_model"] == "org/base" and info["card_data"]["license"] == "apache-2.0"
    assert "hubkit" in info["tags"] and info["library_name"] == "peft"
    listed = json.loads(ok(hf(hub, tmp_path, "models", "list", "--author", "me", "--format", "json")).stdout)
    assert [m["id"] for m in listed] == ["me/cli-model"]
    assert json.loads(ok(hf(hub, tmp_path, "models", "list", "--search", "nothing-like-it", "--format", "json")).stdout) == []

    ok(hf(hub, tmp_path, "repos", "tag", "delete", "me/cli-model", "v1", "-y"))
    ok(hf(hub, tmp_path, "repos", "branch", "delete", "me/cli-model", "dev"))
    assert "v1" not in ok(hf(hub, tmp_path, "repos", "tag", "list", "me/cli-model")).stdout
    # the LFS path was used for the weights (no Xet)
    assert any(r.startswith("PUT /lfs-upload/") for r in hub.requests)
    assert not any("xet" in r for r in hub.requests)


def test_hf_cli_datasets_and_spaces(hub, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text('{"q": 1}\n')
    ok(hf(hub, tmp_path, "repos", "create", "me/data", "--repo-type", "dataset", "--exist-ok"))
    ok(hf(hub, tmp_path, "upload", "me/data", str(tmp_path / "d"), ".", "--repo-type", "dataset"))
    ok(hf(hub, tmp_path, "repos", "create", "me/space", "--type", "space", "--sdk", "gradio", "--exist-ok"))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "app.py").write_text("print('hi')\n")
    ok(hf(hub, tmp_path, "upload", "me/space", str(tmp_path / "s"), ".", "--repo-type", "space"))
    out = tmp_path / "out"
    ok(hf(hub, tmp_path, "download", "me/data", "--repo-type", "dataset", "--local-dir", str(out / "d")))
    ok(hf(hub, tmp_path, "download", "me/space", "--repo-type", "space", "--local-dir", str(out / "s")))
    assert (out / "d" / "train.jsonl").read_text() == '{"q": 1}\n' and (out / "s" / "app.py").exists()


def test_two_publishes_creating_one_new_repo(hub, tmp_path):
    """Two clients create the same new repo at once (exist_ok=True, as every publish and `hf
    upload` does): both succeed, one of them through the 409 answer and its url."""
    script = textwrap.dedent(
        """
        import sys
        from huggingface_hub import HfApi
        url = HfApi().create_repo("me/raced", exist_ok=True)
        print(url)
        """
    )
    results = []

    def one():
        results.append(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env_for(hub, tmp_path), timeout=120))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr[-1500:] for r in results]
    assert {r.stdout.strip() for r in results} == {f"{hub.url}/me/raced"}
    assert [r for r in hub.requests if r == "POST /api/repos/create"] == ["POST /api/repos/create"] * 3
