"""Repo ids resolve through huggingface_hub: merge and eval fetch a base (and an adapter) from a
Hub endpoint (here the local server), pin the commit they got, record it, and work from the
cache once the server is gone."""

from __future__ import annotations

import json

import pytest
import yaml

from hubkit.errors import EvalError, MergeError
from hubkit.eval import run_eval
from hubkit.hub.server import LocalHub
from hubkit.inspection import sha256_file
from hubkit.manifest import load_manifest
from hubkit.merge import merge
from hubkit.publish import hub_session


@pytest.fixture
def hub_with_models(demo_world, tmp_path, request):
    """A local hub holding the demo base and the lora-full adapter (unique names per test: the
    in-process huggingface_hub cache is shared by the session)."""
    from huggingface_hub import HfApi

    tag = request.node.name.replace("_", "-")[-40:]
    ids = {"base": f"demo-user/base-{tag}", "adapter": f"demo-user/adapter-{tag}"}
    with LocalHub(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.url)
        with hub_session(hub.url):
            heads = {}
            for key, folder in (("base", demo_world.paths.base), ("adapter", demo_world.paths.adapters["lora-full"])):
                api.create_repo(ids[key])
                heads[key] = api.upload_folder(folder_path=str(folder), repo_id=ids[key], ignore_patterns=["README.md"]).oid
        yield hub, ids, heads


def test_merge_fetches_repo_ids_pins_the_commit_and_works_from_cache(hub_with_models, demo_world, tmp_path):
    hub, ids, heads = hub_with_models
    local = merge(demo_world.paths.adapters["lora-full"], tmp_path / "from-folders", base=demo_world.paths.base)
    remote = merge(ids["adapter"], tmp_path / "from-hub", base=ids["base"], endpoint=hub.url)
    assert remote.lineage["base"]["ref"] == ids["base"] and remote.lineage["base"]["commit"] == heads["base"]
    assert remote.lineage["adapter"]["commit"] == heads["adapter"]
    assert remote.lineage["files"] == local.lineage["files"], "same inputs from the Hub must give byte-identical shards"

    # a later commit on main does not move a pinned revision
    from huggingface_hub import HfApi

    with hub_session(hub.url):
        cfg = json.loads((demo_world.paths.base / "config.json").read_text())
        cfg["hubkit_test_marker"] = True
        HfApi(endpoint=hub.url).upload_file(path_or_fileobj=json.dumps(cfg).encode(), path_in_repo="config.json", repo_id=ids["base"])
    pinned = merge(ids["adapter"], tmp_path / "pinned", base=ids["base"], revision=heads["base"], endpoint=hub.url)
    assert pinned.lineage["base"]["commit"] == heads["base"]
    assert "hubkit_test_marker" not in json.loads((tmp_path / "pinned" / "config.json").read_text())

    # the server is gone: the cache answers for what was fetched, and a miss is a clear error
    url = hub.url
    hub.stop()
    again = merge(ids["adapter"], tmp_path / "offline", base=ids["base"], revision=heads["base"], endpoint=url)
    assert again.lineage["files"] == local.lineage["files"]
    with pytest.raises(MergeError, match="not in the local Hugging Face cache"):
        merge("demo-user/never-uploaded", tmp_path / "x", base=ids["base"], endpoint=url)


def test_unknown_repo_is_a_clear_error(hub_with_models, tmp_path):
    hub, ids, _ = hub_with_models
    with pytest.raises(MergeError, match="no such repo"):
        merge(ids["adapter"], tmp_path / "x", base="demo-user/no-such-base", endpoint=hub.url)
    with pytest.raises(MergeError, match="no revision"):
        merge(ids["adapter"], tmp_path / "x", base=ids["base"], revision="no-such-branch", endpoint=hub.url)


def test_eval_fetches_a_hub_base_and_records_its_commit(hub_with_models, demo_world, tmp_path):
    hub, ids, heads = hub_with_models
    data = yaml.safe_load(demo_world.paths.manifest.read_text())
    for art in data["artifacts"].values():
        art.pop("base_model_path", None)
        art["base_model"] = ids["base"]
    data["evals"]["demo"].update(strategies=["fp32-lora"], env="current", limit=8, artifacts=["lora-full"])
    path = demo_world.paths.root / "hubkit-hubbase.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    manifest = load_manifest(path)

    outcomes = run_eval(manifest, runs_dir=tmp_path / "runs", endpoint=hub.url)
    by = {o.subject: o.record for o in outcomes}
    assert set(by) == {"base", "lora-full"}
    for rec in by.values():
        assert rec.status == "ok", rec.attempts
        base = rec.weights["base"]
        assert base["repo_id"] == ids["base"] and base["commit"] == heads["base"]
        # the sha256 the cache knows (blob names) is the file's real sha256
        assert base["sha256"] == {"model.safetensors": sha256_file(demo_world.paths.base / "model.safetensors")}
        # lm-eval was told the exact commit, so the recorded command reproduces this run
        # (a command line, or the in-process call that a shared-process run records)
        if rec.command is not None:
            assert f"revision={heads['base']}" in rec.command
        else:
            assert rec.call["pretrained"] == ids["base"] and rec.call["revision"] == heads["base"], rec.call

    with pytest.raises(EvalError, match="no such repo"):
        for art in data["artifacts"].values():
            art["base_model"] = "demo-user/missing-base"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        run_eval(load_manifest(path), runs_dir=tmp_path / "runs2", endpoint=hub.url)
