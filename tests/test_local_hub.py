"""The local Hub server against the genuine huggingface_hub client (in a subprocess, since the
client reads HF_ENDPOINT and HF_HUB_DISABLE_XET at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hubkit.hub.server import LocalHub

TOKEN = "hf_" + "localTESTtoken0123456789abcdef"


def client(hub: LocalHub, script: str, token: str | None = TOKEN, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, **kw)


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN, record=True) as h:
        yield h


def test_publish_download_roundtrip_and_noop(hub, demo_world, tmp_path):
    """create_repo, upload_folder (regular + LFS), snapshot_download gives identical bytes; an
    unchanged re-upload makes no commit; tags and refs work."""
    adapter = demo_world.paths.adapters["lora-full"]
    out = tmp_path / "dl"
    proc = client(hub, f"""
        import json
        from huggingface_hub import HfApi, snapshot_download
        api = HfApi()
        api.create_repo("demo-user/lora-full", exist_ok=True)
        # peft's own README names a local base_model path, which the Hub (and this server) refuse
        c1 = api.upload_folder(folder_path={str(adapter)!r}, repo_id="demo-user/lora-full", commit_message="adapter", ignore_patterns=["README.md"])
        head1 = api.repo_info("demo-user/lora-full").sha
        c2 = api.upload_folder(folder_path={str(adapter)!r}, repo_id="demo-user/lora-full", commit_message="again", ignore_patterns=["README.md"])
        head2 = api.repo_info("demo-user/lora-full").sha
        api.create_tag("demo-user/lora-full", tag="v1", tag_message="first")
        api.create_tag("demo-user/lora-full", tag="gone", tag_message="x")
        api.delete_tag("demo-user/lora-full", tag="gone")
        api.create_branch("demo-user/lora-full", branch="exp")
        try:
            api.create_branch("demo-user/lora-full", branch="exp")
            dup = "accepted"
        except Exception as e:
            dup = type(e).__name__
        api.delete_branch("demo-user/lora-full", branch="exp")
        refs = api.list_repo_refs("demo-user/lora-full")
        path = snapshot_download("demo-user/lora-full", local_dir={str(out)!r})
        files = api.list_repo_files("demo-user/lora-full")
        commits = api.list_repo_commits("demo-user/lora-full")
        print(json.dumps({{"head1": head1, "head2": head2, "tags": [t.name for t in refs.tags], "branches": [b.name for b in refs.branches], "dup": dup, "files": files, "commits": len(commits)}}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["head1"] == r["head2"], "an unchanged re-upload must not create a commit"
    assert r["commits"] == 2 and r["tags"] == ["v1"]
    assert r["branches"] == ["main"] and r["dup"] == "HfHubHTTPError"  # 409 on an existing branch
    local = {p.relative_to(adapter).as_posix(): p.read_bytes() for p in adapter.rglob("*") if p.is_file() and p.name != "README.md"}
    assert set(local) <= set(r["files"])
    for rel, data in local.items():
        assert (out / rel).read_bytes() == data, rel
    # the weights went through LFS (batch + PUT + verify), not inline
    assert any("/info/lfs/objects/batch" in x for x in hub.requests)
    assert any(x.startswith("PUT /lfs-upload/") for x in hub.requests)
    assert TOKEN not in proc.stdout + proc.stderr


def test_client_request_sequence_contract(hub, tmp_path):
    """The request sequence huggingface_hub makes for one create + upload: a client upgrade that
    changes the protocol shows up here first."""
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# x\n")
    (folder / "model.safetensors").write_bytes(b"\0" * 2048)
    proc = client(hub, f"""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo("me/contract")
        api.upload_folder(folder_path={str(folder)!r}, repo_id="me/contract")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # huggingface_hub 2.4: README.md is validated twice (upload_folder's own check, then
    # create_commit's), before the preupload; weights go through the LFS batch API
    assert hub.requests == [
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        "POST /api/validate-yaml",
        "POST /api/models/me/contract/preupload/main",
        "POST /me/contract.git/info/lfs/objects/batch",
        "PUT /lfs-upload/<oid>",
        "POST /lfs-verify/<oid>",
        "POST /api/models/me/contract/commit/main",
    ], hub.requests


def test_token_is_required_and_errors_are_clear(hub):
    proc = client(hub, """
        from huggingface_hub import HfApi
        HfApi().create_repo("me/x")
    """, token="hf_" + "wrongTOKENwrongTOKEN12345")
    assert proc.returncode != 0 and "401" in proc.stderr
    proc = client(hub, """
        from huggingface_hub import HfApi
        HfApi().create_repo("me/x")
    """, token=None)
    assert proc.returncode != 0 and "401" in proc.stderr
    assert "hf_wrongTOKEN" not in proc.stderr


def test_spaces_and_yaml_validation(hub, tmp_path):
    proc = client(hub, """
        from huggingface_hub import HfApi, SpaceCard
        api = HfApi()
        api.create_repo("me/space", repo_type="space", space_sdk="gradio")
        api.upload_file(path_or_fileobj=b"---\\ntitle: t\\nsdk: gradio\\nlicense: apache-2.0\\n---\\n", path_in_repo="README.md", repo_id="me/space", repo_type="space")
        print(api.space_info("me/space").sdk)
        try:
            api.upload_file(path_or_fileobj=b"---\\nlicense: not-a-license\\n---\\n", path_in_repo="README.md", repo_id="me/space", repo_type="space")
        except Exception as exc:
            print("refused:", type(exc).__name__, str(exc)[:200])
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == "gradio"
    assert "refused:" in proc.stdout and "not-a-license" in proc.stdout
