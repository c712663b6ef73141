"""`hubkit verify`: a published card's numbers run again and judged, offline, against the tiny
demo models published to a local hub (the genuine huggingface_hub client on loopback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hubkit.cli import main
from hubkit.hub.server import LocalHub
from hubkit.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
SEED_SHAPE = REPO / "tests" / "data" / "cards" / "seed000-shape-4bit-peft-command.md"


@pytest.fixture(scope="module")
def published(demo_world, tmp_path_factory):
    """The demo's lora-full, evaluated (base too), carded and published with its base to a local hub."""
    from hubkit.card import render_cards, write_cards
    from hubkit.eval import run_eval
    from hubkit.publish import publish

    root = tmp_path_factory.mktemp("verify") / "world"
    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", "cards", "hubkit-*.yaml", ".hubkit"))
    data = yaml.safe_load((root / "hubkit.yaml").read_text())
    data["evals"]["demo"].update(artifacts=["lora-full"], limit=24)
    (root / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    m = load_manifest(root / "hubkit.yaml")
    run_eval(m)
    write_cards(render_cards(m), root / "cards")
    hub = LocalHub(tmp_path_factory.mktemp("hub")).start()
    publish(m, artifact="tiny-mistral", endpoint=hub.url)
    publish(m, artifact="lora-full", endpoint=hub.url)
    yield m, hub
    hub.stop()


def test_verify_a_repo_hubkit_published_reports_every_number_agreeing(published, tmp_path, capsys):
    m, hub = published
    out = tmp_path / "verify"
    code = main(["verify", "demo-user/tiny-mistral-lora-full", "--endpoint", hub.url, "--json", "--out", str(out)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["kind"] == "hubkit", report
    rows = report["results"]
    assert {(r["task"], r["metric"]) for r in rows} == {("arc_challenge", "acc"), ("arc_challenge", "acc_norm")}
    for r in rows:
        # same weights, same data (published with the records), same machine: the same numbers
        assert r["verdict"] == "agrees" and r["reproduced"] == r["claimed"] and r["strategy"] == "4bit-lora", r
    assert (out / "report.md").read_text().startswith("# hubkit verify: demo-user/tiny-mistral-lora-full")


def _card(tmp_path: Path, claimed: str) -> Path:
    """Seed 000's card shape, its command pointed at the tiny models on the local hub."""
    text = SEED_SHAPE.read_text()
    text = text.replace("pretrained=golfoscar/mistral-7b-sft-arc", "pretrained=hubkit-demo/tiny-mistral")
    text = text.replace("peft=golfoscar/mistral-7b-v0.1-nca-arc-lora", "peft=demo-user/tiny-mistral-lora-full")
    text = text.replace("tokenizer=mistralai/Mistral-7B-v0.1,dtype=bfloat16", "tokenizer=hubkit-demo/tiny-mistral,dtype=float32")
    text = text.replace("--num_fewshot 25", "--num_fewshot 0").replace("25-shot", "0-shot").replace("--batch_size 64", "--batch_size 16")
    text = text.replace("**0.6834 ± 0.0136**", f"**{claimed}**")
    path = tmp_path / "README.md"
    path.write_text(text)
    return path


def test_verify_a_card_that_documents_a_command(published, demo_world, tmp_path, capsys):
    """A card with only a documented command and a results table (seed 000's shape): the command
    is parsed exactly, run with local data, and each of the model's numbers gets a verdict; a
    number the model does not reach is reported as disagreeing."""
    m, hub = published
    # the truth on this machine, to write one true and one planted claim
    from hubkit.eval.records import RunStore

    rec = next(r for r in RunStore(m.root / "runs").records() if r.subject == "lora-full")
    acc_norm = next(r for r in rec.rows if r.metric == "acc_norm")
    data = [f"arc_challenge:{s}={demo_world.paths.data / (s + '.jsonl')}" for s in ("train", "validation", "test")]
    args = ["--endpoint", hub.url, "--env", "current", "--limit", "24", "--json", *(x for d in data for x in ("--data", d))]
    card = _card(tmp_path, f"{acc_norm.value:.4f} ± {acc_norm.stderr:.4f}")
    code = main(["verify", str(card), "--out", str(tmp_path / "v1"), *args])
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "card" and code == 0, report
    (row,) = report["results"]
    assert (row["task"], row["metric"], row["num_fewshot"], row["verdict"]) == ("arc_challenge", "acc_norm", 0, "agrees")
    assert row["strategy"] == "4bit-lora"  # the card's own load path: 4-bit NF4 + the adapter
    found = " ".join(report["found"])
    for fact in ("model_args.peft", "model_args.load_in_4bit", "tasks", "num_fewshot", "batch_size", "lm-eval==0.4.5", "transformers==4.49.0"):
        assert fact in found, fact
    assert any("ran in the current environment" in d for d in report["differences"])
    assert any("first 24 documents" in d for d in report["differences"])
    # a planted wrong claim
    card = _card(tmp_path, "0.1234 ± 0.0100")
    code = main(["verify", str(card), "--out", str(tmp_path / "v2"), *args])
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]
    assert code == 1 and row["verdict"] == "disagrees" and not report["ok"]
    md = (tmp_path / "v2" / "report.md").read_text()
    assert "0 of 1 claimed numbers were reproduced and agree" in md and "disagrees" in md


def test_verify_explains_what_it_cannot_run(tmp_path, capsys):
    plain = tmp_path / "README.md"
    plain.write_text("---\nlicense: mit\n---\n# A model\n\n| task | acc |\n|---|---|\n| ARC | 0.5 |\n")
    assert main(["verify", str(plain), "--out", str(tmp_path / "v")]) == 1
    err = capsys.readouterr().err
    assert "documents no lm-eval command" in err and "Traceback" not in err
    assert main(["verify", "not a path or repo", "--out", str(tmp_path / "v")]) == 1
    assert "no such README" in capsys.readouterr().err
    assert main(["verify", str(plain), "--data", "arc_challenge=oops"]) != 0
