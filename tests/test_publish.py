"""hubkit publish against the local Hub server with the genuine huggingface_hub client:
round trips, no-op republish, card-only changes, every refusal, token hygiene."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hubkit.errors import PublishError
from hubkit.hub.server import LocalHub
from hubkit.manifest import load_manifest
from hubkit.publish import hub_session, publish

TOKEN = "hf_" + "publishTESTtoken0123456789abcd"


@pytest.fixture
def world(demo_world, tmp_path):
    """A private copy of the demo world (publish writes a hash cache; tests edit files)."""
    root = tmp_path / "world"
    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", "cards", "hubkit-*.yaml", ".hubkit"))
    from hubkit.merge import merge

    merge(root / "adapters" / "lora-full", root / "merged" / "lora-full", base=root / "base", force=True)
    return root


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN, record=True) as h:
        yield h


def api_for(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=TOKEN)


def test_publish_roundtrip_noop_and_card_only_change(world, hub, tmp_path, capsys):
    from huggingface_hub import ModelCard, snapshot_download

    m = load_manifest(world / "hubkit.yaml")
    first = publish(m, endpoint=hub.url, token=TOKEN)
    assert set(first.commits) == {"hubkit-demo/tiny-mistral", "demo-user/tiny-mistral-lora-full", "demo-user/tiny-mistral-lora-half", "demo-user/tiny-mistral-lora-full-merged"}
    assert all(first.commits.values()) and set(first.tags) == set(first.commits)
    with hub_session(hub.url):
        for plan in first.plans:
            got = Path(snapshot_download(plan.repo_id, endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "dl"))
            art = m.artifacts[plan.artifact]
            for f in (world / art.path).iterdir():
                if f.name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "config.json", "model.safetensors", "hubkit_merge.json"):
                    assert (got / f.name).read_bytes() == f.read_bytes(), f
            card = ModelCard.load(got / "README.md")
            assert card.data.license == "apache-2.0"
            assert card.data.base_model == (None if plan.repo_id == "hubkit-demo/tiny-mistral" else "hubkit-demo/tiny-mistral")
            assert not (got / "README.md").read_text().count(str(world))  # peft's README with local paths is not published
    # nothing changed: no file sent, no commit
    sent_before = [r for r in hub.requests if "lfs-upload" in r or "/commit/" in r]
    again = publish(m, endpoint=hub.url, token=TOKEN)
    assert all(sha is None for sha in again.commits.values()) and all(p.noop for p in again.plans)
    assert [r for r in hub.requests if "lfs-upload" in r or "/commit/" in r] == sent_before
    # only the card changed: only README.md is sent
    data = yaml.safe_load((world / "hubkit.yaml").read_text())
    data["project"]["limitations"].append("A new limitation, to change the card only.")
    (world / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    m2 = load_manifest(world / "hubkit.yaml")
    # the cards on disk (written by the first publish) no longer match: publish asks for a review
    from hubkit.card import render_cards, write_cards
    from hubkit.errors import CardError

    with pytest.raises(CardError, match=r"cards/.*/README.md is stale"):
        publish(m2, endpoint=hub.url, token=TOKEN, dry_run=True)
    write_cards(render_cards(m2), world / "cards")
    dry = publish(m2, endpoint=hub.url, token=TOKEN, dry_run=True)
    for plan in dry.plans:
        assert [f.path_in_repo for f in plan.changed] == ["README.md"] and not plan.added and not plan.deleted
    assert all(v is None for v in dry.commits.values()) or not dry.commits
    third = publish(m2, endpoint=hub.url, token=TOKEN)
    assert all(third.commits.values())
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_publish_uploads_the_card_that_was_reviewed(world, hub, tmp_path, capsys, monkeypatch):
    """`hubkit card --template-dir X` then `hubkit publish`: the README published is the one X
    rendered; an edited or stale card on disk is refused, not silently replaced."""
    from hubkit.cli import main

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    tpl = tmp_path / "tpl" / "card"
    tpl.mkdir(parents=True)
    (tpl / "_usage_adapter.md.j2").write_text("\n## Usage\n\nAsk the team for {{ artifact.repo_id }}.\n")
    manifest = str(world / "hubkit.yaml")
    assert main(["card", "-m", manifest, "--artifact", "lora-half", "--template-dir", str(tmp_path / "tpl")]) == 0
    reviewed = (world / "cards" / "lora-half" / "README.md").read_text()
    assert "Ask the team for demo-user/tiny-mistral-lora-half." in reviewed
    capsys.readouterr()
    assert main(["publish", "-m", manifest, "--artifact", "lora-half", "--endpoint", hub.url]) == 0
    with hub_session(hub.url):
        from huggingface_hub import hf_hub_download

        got = Path(hf_hub_download("demo-user/tiny-mistral-lora-half", "README.md", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "dl"))
    assert got.read_text() == reviewed
    # a README edited by hand after rendering
    readme = world / "cards" / "lora-half" / "README.md"
    readme.write_text(reviewed.replace("Ask the team", "Ask nobody"))
    capsys.readouterr()
    assert main(["publish", "-m", manifest, "--artifact", "lora-half", "--endpoint", hub.url, "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "was edited after `hubkit card` rendered it" in err and "Traceback" not in err
    # stale: the manifest changed since
    readme.write_text(reviewed)
    data = yaml.safe_load((world / "hubkit.yaml").read_text())
    data["project"]["limitations"].append("Changed after the review.")
    (world / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["publish", "-m", manifest, "--artifact", "lora-half", "--endpoint", hub.url, "--dry-run"]) == 1
    assert "is stale" in capsys.readouterr().err


def test_refuses_secrets_and_pickles(world, hub):
    m = load_manifest(world / "hubkit.yaml")
    (world / "adapters" / "lora-half" / ".env").write_text("HF_TOKEN=x\n")
    with pytest.raises(PublishError, match=r"\.env: looks like a secret"):
        publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN)
    (world / "adapters" / "lora-half" / ".env").unlink()
    cfg = world / "adapters" / "lora-half" / "tokenizer_config.json"
    if not cfg.exists():
        cfg = world / "adapters" / "lora-half" / "adapter_config.json"
    original = cfg.read_text()
    cfg.write_text(original.replace("{", '{"note": "hf_' + "a" * 34 + '",', 1))
    with pytest.raises(PublishError, match="contains what looks like a secret, Hugging Face token"):
        publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN)
    cfg.write_text(original)
    (world / "adapters" / "lora-half" / "training_args.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(PublishError, match="pickled weights"):
        publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN)
    ok = publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN, allow_pickle=True)
    assert "training_args.bin" in [f.path_in_repo for f in ok.plans[0].added]
    assert not any("lfs-upload" in r for r in hub.requests[:1])


def test_readme_edited_on_hub_is_not_overwritten(world, hub):
    from huggingface_hub import CommitOperationAdd

    m = load_manifest(world / "hubkit.yaml")
    publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN)
    with hub_session(hub.url):
        api = api_for(hub)
        api.create_commit("demo-user/tiny-mistral-lora-half", [CommitOperationAdd("README.md", b"---\nlicense: apache-2.0\n---\n# Edited by hand on the Hub\n")], commit_message="hand edit")
        api.create_commit("demo-user/tiny-mistral-lora-half", [CommitOperationAdd("notes.txt", b"mine")], commit_message="their file")
    data = yaml.safe_load((world / "hubkit.yaml").read_text())
    data["project"]["summary"] = "A changed summary."
    (world / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    m = load_manifest(world / "hubkit.yaml")
    from hubkit.card import render_cards, write_cards

    write_cards(render_cards(m, "lora-half"), world / "cards")  # the new card, reviewed
    said = []
    with pytest.raises(PublishError, match="README.md was edited on the Hub"):
        publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN, say=said.append)
    assert "# Edited by hand on the Hub" in "\n".join(said)  # the diff is shown
    done = publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN, force=True)
    assert done.plans[0].kept_remote == ["notes.txt"]  # never deleted: hubkit did not put it there
    with hub_session(hub.url):
        files = api_for(hub).list_repo_files("demo-user/tiny-mistral-lora-half")
    assert "notes.txt" in files


def test_files_hubkit_put_there_are_deleted_when_gone(world, hub):
    m = load_manifest(world / "hubkit.yaml")
    publish(m, artifact="lora-full-merged", endpoint=hub.url, token=TOKEN)
    (world / "merged" / "lora-full" / "generation_config.json").unlink()
    plan = publish(m, artifact="lora-full-merged", endpoint=hub.url, token=TOKEN).plans[0]
    assert plan.deleted == ["generation_config.json"]
    with hub_session(hub.url):
        assert "generation_config.json" not in api_for(hub).list_repo_files("demo-user/tiny-mistral-lora-full-merged")


def test_bad_token_is_one_clear_message(world, hub, capsys):
    m = load_manifest(world / "hubkit.yaml")
    bad = "hf_" + "WRONGwrongWRONGwrong0123456789"
    with pytest.raises(PublishError) as info:
        publish(m, artifact="lora-half", endpoint=hub.url, token=bad)
    assert "401" in str(info.value) and "HF_TOKEN" in (info.value.hint or "")
    out = capsys.readouterr()
    assert bad not in str(info.value) + out.out + out.err


def test_cli_dry_run_json(world, hub, monkeypatch, capsys):
    from hubkit.cli import main

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code = main(["publish", "-m", str(world / "hubkit.yaml"), "--endpoint", hub.url, "--dry-run", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert data["dry_run"] and {p["repo_id"] for p in data["plans"]} >= {"demo-user/tiny-mistral-lora-full"}
    assert all(not p["exists"] and p["bytes_to_send"] > 0 for p in data["plans"])
    assert not any("/commit/" in r for r in hub.requests)
    assert TOKEN not in out.out + out.err


# -- faults -----------------------------------------------------------------------------------------


def test_a_5xx_is_retried(world, tmp_path):
    """One 503 on an LFS upload: huggingface_hub retries it and the publish completes."""
    with LocalHub(tmp_path / "hub5", token=TOKEN, record=True, faults={"status": {r"PUT /lfs-upload/": [503]}}) as hub:
        m = load_manifest(world / "hubkit.yaml")
        result = publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN)
        assert all(result.commits.values())
        puts = [r for r in hub.requests if r.startswith("PUT /lfs-upload/")]
        assert len(puts) == len(set(puts)) + 1  # the refused upload was sent again


def test_server_killed_mid_publish_leaves_no_partial_commit(world, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    def start(faults=None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, HUBKIT_HUB_TOKEN=TOKEN)
        if faults:
            env["HUBKIT_HUB_FAULTS"] = json.dumps(faults)
        proc = subprocess.Popen([sys.executable, "-m", "hubkit", "hub", "serve", "--root", str(tmp_path / "hubk"), "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        return proc, f"http://127.0.0.1:{port}"

    m = load_manifest(world / "hubkit.yaml")
    proc, url = start({"exit_on": r"POST /api/models/.*/commit/"})
    with pytest.raises(PublishError, match="lost the Hub at .* while committing; whether the commit landed is unknown"):
        publish(m, artifact="lora-full-merged", endpoint=url, token=TOKEN)
    assert proc.wait(timeout=10) == 17
    proc, url = start()
    try:
        with hub_session(url):
            from huggingface_hub import HfApi

            api = HfApi(endpoint=url, token=TOKEN)
            files = api.list_repo_files("demo-user/tiny-mistral-lora-full-merged")
            assert files == [".gitattributes"]  # the repo exists, nothing half-committed
        done = publish(m, artifact="lora-full-merged", endpoint=url, token=TOKEN)
        assert all(done.commits.values())
        with hub_session(url):
            assert "model.safetensors" in api.list_repo_files("demo-user/tiny-mistral-lora-full-merged")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_published_run_records_name_no_local_paths(world, hub, tmp_path):
    """Run records mention the adapter path lm-eval was given, the env's python and caches; what
    is published says ./adapters/..., ~ or $HUBKIT_HOME instead, in file names and contents."""
    from huggingface_hub import snapshot_download

    from hubkit.eval import run_eval

    data = yaml.safe_load((world / "hubkit.yaml").read_text())
    data["evals"]["demo"].update(strategies=["fp32-lora"], limit=4, artifacts=["lora-half"], include_base=False)
    (world / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    m = load_manifest(world / "hubkit.yaml")
    (outcome,) = run_eval(m)
    local_text = "\n".join(p.read_text(errors="replace") for p in outcome.record.path.rglob("*.json"))
    assert str(world) in local_text  # the local record does name the folders
    publish(m, artifact="lora-half", endpoint=hub.url, token=TOKEN)
    with hub_session(hub.url):
        got = Path(snapshot_download("demo-user/tiny-mistral-lora-half", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "dl"))
    published = [p for p in got.rglob("*") if p.is_file()]
    assert any(p.name == "record.json" for p in published)
    machine = [str(world), str(world).replace("/", "__"), str(Path.home())]
    for p in published:
        rel = p.relative_to(got).as_posix()
        assert not any(m_ in rel for m_ in machine), rel
        if p.suffix in (".json", ".jsonl", ".yaml", ".log", ".md"):
            text = p.read_text(errors="replace")
            assert not any(m_ in text for m_ in machine), (rel, [m_ for m_ in machine if m_ in text])
    prov = json.loads(next(p for p in published if p.name == "record.json").read_text())
    assert "peft=./adapters/lora-half" in prov["command"]
    # the local record is untouched (records are immutable)
    assert str(world) in "\n".join(p.read_text(errors="replace") for p in outcome.record.path.rglob("*.json"))
