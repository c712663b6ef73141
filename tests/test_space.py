"""The side-by-side Space: the mixed-batch engine against adapters run alone and against lm-eval's
own scores, the Gradio app through gradio_client, and build/deploy to the local hub."""

from __future__ import annotations

import ast
import json
import math
import re
import shutil
import sys

import pytest
import torch
import yaml

from hubkit.eval import run_eval
from hubkit.hub.server import LocalHub
from hubkit.manifest import load_manifest
from hubkit.space_build import build_space, deploy_space

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "space"))
from engine import BASE, Engine, word_diff  # noqa: E402  (the Space's own module, as the Space imports it)

QUESTION = "Question: {q}\nAnswer:"


@pytest.fixture(scope="module")
def engine(demo_world):
    p = demo_world.paths
    return Engine(str(p.base), {n: str(p.adapters[n]) for n in ("lora-full", "lora-half")}, add_bos_token=True)


def _alone(demo_world, name: str):
    """A fresh base with only this adapter (or none): the reference a mixed batch must match."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(demo_world.paths.base), dtype=torch.float32)
    if name != BASE:
        model = PeftModel.from_pretrained(model, str(demo_world.paths.adapters[name]))
    return model.eval()


def _rows(demo_world, n=3):
    return [json.loads(line) for line in (demo_world.paths.root / "data" / "test.jsonl").read_text().splitlines()[:n]]


def test_mixed_batch_equals_each_adapter_alone(engine, demo_world):
    """Scores and greedy generations from one mixed batch equal those of a model holding only
    that adapter (a separately loaded PeftModel; the base with no adapter at all)."""
    row = _rows(demo_world, 1)[0]
    context = QUESTION.format(q=row["question"])
    choices = [" " + c for c in row["choices"]["text"]]
    mixed = engine.score(context, choices)
    gen_mixed = engine.generate(context, max_new_tokens=6)
    for name in engine.columns:
        model = _alone(demo_world, name)
        for choice, ll in zip(choices, mixed[name].loglik):
            ctx, cont = engine.encode_pair(context, choice)
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            ref = sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
            assert ll == pytest.approx(ref, abs=1e-4), (name, choice)
        ids = torch.tensor([engine.encode(context)])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, pad_token_id=engine.pad_id)
        ref_text = engine.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert gen_mixed[name] == ref_text, name
    # the adapters really differ from the base here, so the routing is being tested
    assert mixed["lora-full"].pick() != mixed[BASE].pick() or gen_mixed["lora-full"] != gen_mixed[BASE]


def test_seeded_sampling_repeats_and_ignores_batch_mates(engine):
    prompt = "Question: Which animal"
    kw = dict(max_new_tokens=10, temperature=1.2, top_p=0.95, seed=1234)
    a = engine.generate(prompt, **kw)
    b = engine.generate(prompt, **kw)
    assert a == b
    alone = engine.generate(prompt, ["lora-half"], **kw)
    assert alone["lora-half"] == a["lora-half"], "a column's sample must not depend on the other columns"
    others = [engine.generate(prompt, **{**kw, "seed": s}) for s in range(1, 6)]
    assert any(o != a for o in others), "different seeds never changed the sample"


def test_probabilities_sum_to_one_and_pick_is_the_argmax(engine, demo_world):
    for row in _rows(demo_world, 3):
        scores = engine.score(QUESTION.format(q=row["question"]), [" " + c for c in row["choices"]["text"]])
        for s in scores.values():
            for norm in (False, True):
                p = s.probs(norm)
                assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)
                assert p[s.pick(norm)] == max(p)
            assert len(s.loglik) == len(s.greedy) == 4


def test_scores_match_lm_evals_own(engine, demo_world, tmp_path):
    """The multiple-choice tab scores like lm-eval: for the documents of a real fp32 run, the
    per-choice log-likelihoods lm-eval recorded equal the engine's."""
    data = yaml.safe_load(demo_world.paths.manifest.read_text())
    data["evals"]["demo"].update(strategies=["fp32-lora"], limit=6, artifacts=["lora-half"], include_base=False)
    path = demo_world.paths.root / "hubkit-space-lmeval.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (outcome,) = run_eval(load_manifest(path), runs_dir=tmp_path / "runs")
    samples = sorted(outcome.record.path.rglob("samples_*.jsonl"))
    assert samples
    checked = 0
    for line in samples[0].read_text().splitlines():
        s = json.loads(line)
        args = s["arguments"] if isinstance(s["arguments"], dict) else ast.literal_eval(s["arguments"])
        resps = s["resps"] if isinstance(s["resps"], list) else ast.literal_eval(s["resps"])
        pairs = [(a["arg_0"], a["arg_1"]) for a in args.values()]
        scores = engine.score(pairs[0][0], [c for _, c in pairs], ["lora-half"])["lora-half"]
        for (ll, greedy), r in zip(zip(scores.loglik, scores.greedy), resps):
            assert ll == pytest.approx(float(r[0][0]), abs=2e-4)
            assert greedy == (str(r[0][1]) == "True")
        checked += 1
    assert checked == 6


def test_word_diff_marks_changed_words():
    d = word_diff("the cat sat", "the dog sat down")
    assert ("cat", "-") in d and ("dog", "+") in d and (" down", "+") in d
    assert "".join(t for t, lab in d if lab != "-") == "the dog sat down"
    assert word_diff("same text", "same text") == [("same text", None)]


# -- the app ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(demo_world, tmp_path_factory):
    """A manifest and real run records of its eval setup (for the Results tab)."""
    data = yaml.safe_load(demo_world.paths.manifest.read_text())
    data["evals"]["demo"].update(strategies=["fp32-lora"], limit=12)
    path = demo_world.paths.root / "hubkit-space-app.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    runs = tmp_path_factory.mktemp("space-runs")
    run_eval(load_manifest(path), runs_dir=runs)
    return path, runs


@pytest.fixture(scope="module")
def app(recorded, tmp_path_factory):
    """The built Space folder's app, launched on loopback, and a gradio_client for it."""
    import importlib.util

    from gradio_client import Client

    path, runs = recorded
    folder = build_space(load_manifest(path), tmp_path_factory.mktemp("space") / "space", local=True, runs_dir=runs).out
    spec = importlib.util.spec_from_file_location("hubkit_space_app_under_test", folder / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(folder))
    blocks, eng = mod.create(folder / "space_config.json")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, theme=mod.THEME)
    client = Client(blocks.local_url, verbose=False)
    yield client, eng, folder
    blocks.close()


def test_app_generate_streams_every_column(app, demo_world):
    client, eng, _ = app
    prompt = QUESTION.format(q=_rows(demo_world, 1)[0]["question"])
    out = client.predict(prompt, 6, 0.0, 1.0, 0, ["base", "lora-full", "lora-half"], api_name="/generate")
    n = len(eng.columns)
    assert len(out) == 3 * n  # the session state stays on the server
    texts, stats, diffs = out[:n], out[n : 2 * n], out[2 * n : 3 * n]
    assert list(texts) == [eng.generate(prompt, max_new_tokens=6)[c] for c in eng.columns]
    assert all(re.search(r"first token \d+ ms · [\d.]+ tok/s · \d+ tokens? · done", s) for s in stats), stats
    assert diffs[0] is None and all(isinstance(d, list) for d in diffs[1:])
    # a streamed job yields several updates (one per token), not just the final one
    job = client.submit(prompt, 6, 0.0, 1.0, 0, ["base", "lora-half"], api_name="/generate")
    job.result()
    assert len(job.outputs()) >= 2
    assert job.outputs()[-1][1] == "" and "not selected" in job.outputs()[-1][n + 1]


def test_app_multiple_choice_results_and_export(app, demo_world):
    client, eng, _ = app
    row = _rows(demo_world, 1)[0]
    probs, logliks, picks = client.predict(row["question"], "\n".join(row["choices"]["text"]), False, api_name="/multiple_choice")
    assert probs["headers"] == ["choice", "base", "lora-full", "lora-half"]
    for j, col in enumerate(["base", "lora-full", "lora-half"], start=1):
        values = [float(r[j].split()[0]) for r in probs["data"]]
        assert sum(values) == pytest.approx(1.0, abs=0.01)
        assert sum("★" in r[j] for r in probs["data"]) == 1
    truth = row["choices"]["text"][row["choices"]["label"].index(row["answerKey"])]
    assert f"**lora-full** → {truth}" in picks  # lora-full learned every fact

    table, chart = client.predict("acc", api_name="/results")
    subjects = {r[0] for r in table["data"]}
    assert {"base", "lora-full", "lora-half"} <= subjects
    assert {r[0] for r in chart["data"]} == subjects

    path = client.predict("JSON", api_name="/export")
    exported = json.loads(open(path, encoding="utf-8").read())
    assert exported["kind"] == "multiple_choice" and exported["versions"]["peft"] and "lora-half" in exported["models"]
    assert exported["columns"]["lora-full"]["pick"] == truth and exported["choices"] == row["choices"]["text"]


def test_app_refuses_bad_input_with_a_message(app):
    from gradio_client.exceptions import AppError

    client, _, _ = app
    with pytest.raises(AppError, match="Enter a prompt"):
        client.predict("   ", 4, 0.0, 1.0, 0, ["base"], api_name="/generate")
    with pytest.raises(AppError, match="at least two choices"):
        client.predict("Which?", "only one", False, api_name="/multiple_choice")
    with pytest.raises(AppError, match="tokens; this Space takes at most"):
        client.predict("word " * 2000, 4, 0.0, 1.0, 0, ["base"], api_name="/generate")
    # the choices count too: one 8k-character choice, or many that each fit but not together
    with pytest.raises(AppError, match=r"question and its choices are \d+ tokens together .*longest choice #2.*at most 1024"):
        client.predict("Which colour?", "red\n" + "blue " * 1600, False, api_name="/multiple_choice")
    with pytest.raises(AppError, match=r"tokens together .*at most 1024"):
        client.predict("Which colour?", "\n".join(f"{i} " + "green " * 110 for i in range(10)), False, api_name="/multiple_choice")


def test_engine_runs_one_forward_at_a_time_across_threads(engine, demo_world):
    """peft's adapter_names routing is per-call state on shared layers: threads driving the
    engine at once must get what each call gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    rows = _rows(demo_world, 4)
    calls = []
    for i, row in enumerate(rows * 2):
        context = QUESTION.format(q=row["question"])
        cols = [engine.columns, [BASE, "lora-half"], ["lora-full"]][i % 3]
        calls.append(("gen", context, cols))
        calls.append(("score", context, [" " + c for c in row["choices"]["text"]], cols))

    def run(call):
        if call[0] == "gen":
            return engine.generate(call[1], call[2], max_new_tokens=4)
        return {k: v.loglik for k, v in engine.score(call[1], call[2], call[3]).items()}

    alone = [run(c) for c in calls]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(run, calls))
    assert together == alone


def test_app_serves_concurrent_mixed_requests_like_one_by_one(app, demo_world):
    """32 generate and multiple-choice requests at once (two endpoints, one model): every one
    succeeds and answers what it answers alone."""
    from concurrent.futures import wait

    client, eng, _ = app
    n = len(eng.columns)
    selections = [["base", "lora-full", "lora-half"], ["lora-half"], ["base", "lora-full"], ["lora-full", "lora-half"]]
    requests = []
    for i, row in enumerate(_rows(demo_world, 16)):
        if i % 2 == 0:
            args = (QUESTION.format(q=row["question"]), 3 + i % 3, 0.0, 1.0, 0, selections[(i // 2) % 4])
            requests.append(("/generate", args))
            requests.append(("/generate", (row["question"] + " Answer:", 4, 0.8, 0.9, i, selections[(i // 2 + 1) % 4])))
        else:
            requests.append(("/multiple_choice", (row["question"], "\n".join(row["choices"]["text"]), False)))
            requests.append(("/multiple_choice", (row["question"], "\n".join(reversed(row["choices"]["text"])), True)))
    assert len(requests) == 32

    def comparable(api, out):  # generate's stats carry timings; texts and diffs must agree
        return [out[:n], out[2 * n : 3 * n]] if api == "/generate" else out

    alone = [comparable(api, client.predict(*args, api_name=api)) for api, args in requests]
    jobs = [client.submit(*args, api_name=api) for api, args in requests]
    wait(jobs, timeout=300)
    failed, together = [], []
    for (api, _), job in zip(requests, jobs):
        try:
            together.append(comparable(api, job.result(timeout=0)))
        except Exception as exc:  # noqa: BLE001 (counted and shown below)
            failed.append(f"{api}: {exc}")
    assert not failed, f"{len(failed)} of 32 failed: {failed[:3]}"
    assert together == alone


# -- build and deploy --------------------------------------------------------------------------


def test_deploy_to_local_hub_creates_a_space_listing_every_model(demo_world, tmp_path):
    from huggingface_hub import HfApi, SpaceCard, snapshot_download

    from hubkit.publish import hub_session

    manifest = load_manifest(demo_world.paths.manifest)
    with LocalHub(tmp_path / "hub") as hub:
        result = deploy_space(manifest, endpoint=hub.url)
        (plan,) = result.plans
        assert plan.repo_type == "space" and result.commits[plan.repo_id]
        with hub_session(hub.url):
            api = HfApi(endpoint=hub.url)
            folder = snapshot_download(plan.repo_id, repo_type="space", local_dir=tmp_path / "dl", endpoint=hub.url)
            info = api.space_info(plan.repo_id)
        card = SpaceCard.load(f"{folder}/README.md")
        assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.sdk_version
        assert card.data.models == ["hubkit-demo/tiny-mistral", "demo-user/tiny-mistral-lora-full", "demo-user/tiny-mistral-lora-half"]
        assert info.sdk == "gradio"
        config_text = open(f"{folder}/space_config.json", encoding="utf-8").read()
        assert str(demo_world.paths.root) not in config_text and '"path"' not in config_text, "local paths must not be deployed"
        # the same Space again: nothing sent, no commit
        again = deploy_space(manifest, endpoint=hub.url)
        assert again.commits[plan.repo_id] is None


def test_deploy_pins_published_adapter_revisions(demo_world, tmp_path):
    from hubkit.publish import publish

    root = tmp_path / "proj"
    import shutil

    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", ".hubkit"))
    manifest = load_manifest(root / "hubkit.yaml")
    with LocalHub(tmp_path / "hub") as hub:
        commits = {}
        for name in ("lora-full", "lora-half"):
            commits.update(publish(manifest, artifact=name, endpoint=hub.url).commits)
        cfg = build_space(manifest, tmp_path / "sp", endpoint=hub.url).config
        unpinned = build_space(manifest, tmp_path / "sp2", endpoint="http://127.0.0.1:9").config  # another hub: nothing published there
    revs = {a["name"]: a["revision"] for a in cfg["adapters"]}
    assert revs["lora-full"] == commits["demo-user/tiny-mistral-lora-full"]
    assert revs["lora-half"] == commits["demo-user/tiny-mistral-lora-half"]
    assert all(a["revision"] is None for a in unpinned["adapters"])


def test_a_hub_refusing_the_space_is_a_clear_message(demo_world, tmp_path):
    from hubkit.errors import PublishError

    manifest = load_manifest(demo_world.paths.manifest)
    with LocalHub(tmp_path / "hub", faults={"status": {r"POST /api/repos/create": [402]}}) as hub:
        with pytest.raises(PublishError, match="refused to host this Space") as exc:
            deploy_space(manifest, endpoint=hub.url)
    assert "ZeroGPU" in exc.value.hint


def test_space_cli_build_and_dry_run(demo_world, tmp_path, capsys):
    from hubkit.cli import main

    out = tmp_path / "built"
    assert main(["space", "build", "-m", str(demo_world.paths.manifest), "--out", str(out), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert set(built["files"]) == {"README.md", "app.py", "engine.py", "requirements.txt", "space_config.json"}
    from importlib.metadata import version

    reqs = (out / "requirements.txt").read_text().splitlines()
    assert f"peft=={version('peft')}" in reqs and "torch>=2.4" in reqs
    with LocalHub(tmp_path / "hub", record=True) as hub:
        assert main(["space", "deploy", "-m", str(demo_world.paths.manifest), "--endpoint", hub.url, "--dry-run", "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["dry_run"] and plan["plans"][0]["repo_type"] == "space" and not plan["plans"][0]["exists"]
        assert hub.requests and not any(r.startswith("POST /api/repos/create") for r in hub.requests)


def test_deployed_space_loads_its_models_from_the_hub(demo_world, tmp_path):
    """The deployed folder (repo ids and pinned revisions only) runs against a Hub endpoint: the
    app fetches base and adapters through huggingface_hub, like a real Space does."""
    import shutil

    from gradio_client import Client
    from huggingface_hub import HfApi

    from hubkit.publish import hub_session, publish
    from hubkit.space_build import serve_space

    root = tmp_path / "proj"
    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", ".hubkit", "merged"))
    manifest = load_manifest(root / "hubkit.yaml")
    with LocalHub(tmp_path / "hub") as hub:
        with hub_session(hub.url):
            api = HfApi(endpoint=hub.url)
            api.create_repo("hubkit-demo/tiny-mistral")
            api.upload_folder(folder_path=str(root / "base"), repo_id="hubkit-demo/tiny-mistral")
        for name in ("lora-full", "lora-half"):
            publish(manifest, artifact=name, endpoint=hub.url)
        folder = build_space(manifest, tmp_path / "deployable", endpoint=hub.url).out
        assert '"path"' not in (folder / "space_config.json").read_text()
        served = serve_space(folder, env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf")})
        try:
            client = Client(served.url, verbose=False)
            prompt = QUESTION.format(q=_rows(demo_world, 1)[0]["question"])
            out = client.predict(prompt, 4, 0.0, 1.0, 0, ["base", "lora-full", "lora-half"], api_name="/generate")
        finally:
            served.stop()
    local = Engine(str(demo_world.paths.base), {n: str(demo_world.paths.adapters[n]) for n in ("lora-full", "lora-half")}, add_bos_token=True)
    assert list(out[:3]) == [local.generate(prompt, max_new_tokens=4)[c] for c in local.columns]
    cached = list((tmp_path / "hf" / "hub").glob("models--demo-user--tiny-mistral-lora-*"))
    assert len(cached) == 2, "the adapters came through huggingface_hub's cache"


def test_a_deleted_results_file_is_one_line_naming_run_and_file(recorded, tmp_path, capsys):
    """A run record whose lm-eval results JSON was removed by hand: `space build` says which run
    and which file, in one line and a hint, and writes nothing."""
    from hubkit.cli import main
    from hubkit.eval.records import list_records

    path, runs = recorded
    mine = tmp_path / "runs"
    shutil.copytree(runs, mine)
    record = list_records(mine)[-1]
    (rel,) = record.results_files
    results = record.path / rel
    results.parent.chmod(0o755)  # records are frozen read-only; the user removed the file anyway
    results.unlink()
    code = main(["space", "build", "-m", str(path), "--runs-dir", str(mine), "--out", str(tmp_path / "space")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code != 0 and "Traceback" not in err
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    assert record.run_id in lines[0] and rel in lines[0] and str(record.path) in lines[0] and "missing" in lines[0]
    assert not (tmp_path / "space").exists()
