"""The typed run record and the run store: sealed, atomic, imported runs, and the checks that
make an edited record an error instead of a silently changed number. Real lm-eval results files
(tests/data/real/lm_eval) stand in for runs made elsewhere; no model runs here."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from hubkit.card import check_card, render_card
from hubkit.cli import main
from hubkit.eval.compare import compare_runs
from hubkit.eval.imports import import_results
from hubkit.eval.records import PARTIAL_PREFIX, RecordError, RunStore, load_record
from hubkit.errors import EvalError
from hubkit.manifest import load_manifest

REAL = Path(__file__).parent / "data" / "real" / "lm_eval"
MMLU_043 = REAL / "lm_eval-0.4.3-mmlu-group-5shot.json"
GSM8K_047 = REAL / "lm_eval-0.4.7-gsm8k-5shot-strict-flexible.json"
OLD_03 = REAL / "lm_eval-0.3-llama-7b-arc-hellaswag-winogrande-0shot.json"


def project(tmp_path: Path, **evals) -> Path:
    """A manifest with one adapter artifact (facts from a JSON: no weights needed)."""
    facts = {"kind": "adapter", "peft_type": "LORA", "r": 8, "lora_alpha": 16, "scaling": 2.0, "use_rslora": False, "lora_dropout": 0.0,
             "module_types": ["q_proj", "v_proj"], "target_modules": ["q_proj", "v_proj"], "adapted_modules": 64, "trainable_params": 4194304,
             "dtypes": ["BF16"], "use_dora": False, "modules_to_save": [], "base_model": "meta-llama/Llama-2-7b-hf"}
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    data = {
        "project": {"name": "Imported results", "license": "apache-2.0"},
        "artifacts": {"my-lora": {"kind": "adapter", "path": "missing-weights", "facts": "facts.json", "repo_id": "me/my-lora", "base_model": "meta-llama/Llama-2-7b-hf"}},
        "evals": evals or {"leaderboard": {"tasks": ["mmlu", "gsm8k"], "metrics": ["acc", "exact_match"]}},
    }
    path = tmp_path / "hubkit.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_imported_records_are_sealed_typed_and_read_only(tmp_path):
    store = RunStore(tmp_path / "runs")
    rec = import_results(store, MMLU_043, subject="my-lora", setup="leaderboard")
    assert rec.origin == "imported" and rec.ok and rec.sealed and rec.lm_eval_version.startswith("0.4")
    assert rec.imported.file == MMLU_043.name and len(rec.imported.sha256) == 64
    mmlu = next(r for r in rec.rows if r.task == "mmlu")
    assert mmlu.is_group and mmlu.num_fewshot == 5
    assert not (rec.path / "record.json").stat().st_mode & stat.S_IWUSR
    again = load_record(rec.path, full_check=True)
    assert again == rec
    assert store.records() == [rec] and not any(p.name.startswith(PARTIAL_PREFIX) for p in store.root.iterdir())


def _edit(path: Path, old: str, new: str) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_an_edited_or_truncated_record_is_an_error_naming_run_and_file(tmp_path):
    store = RunStore(tmp_path / "runs")
    rec = import_results(store, GSM8K_047, subject="my-lora", setup="leaderboard")
    results = rec.path / rec.results_files[0]
    _edit(results, "0.6178923426838514", "0.7178923426838514")  # same size, another number
    with pytest.raises(RecordError, match=rf"run {rec.run_id}: .*{results.name} was edited after the run"):
        load_record(rec.path)
    _edit(results, "0.7178923426838514", "0.71789")  # truncated
    with pytest.raises(RecordError, match="was changed after the run"):
        load_record(rec.path)
    # the store reports it; nothing silently disappears
    fresh = RunStore(tmp_path / "runs")
    assert fresh.records() == [] and rec.run_id in fresh.problems[0]
    with pytest.raises(RecordError):
        fresh.records(strict=True)


def test_card_check_names_an_edited_record(tmp_path, capsys):
    path = project(tmp_path)
    store = RunStore(tmp_path / "runs")
    rec = import_results(store, GSM8K_047, subject="my-lora", setup="leaderboard")
    assert main(["card", "-m", str(path)]) == 0
    assert main(["card", "-m", str(path), "--check"]) == 0
    _edit(rec.path / "record.json", '"status": "ok"', '"status": "ok" ')
    capsys.readouterr()
    assert main(["card", "-m", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert rec.run_id in err and "record.json" in err and "Traceback" not in err


def test_interrupted_records_are_swept_and_ids_never_clash(tmp_path):
    store = RunStore(tmp_path / "runs")
    dead = store.root / f"{PARTIAL_PREFIX}20260101T000000-x-y-deadbeef-999999999"
    dead.mkdir(parents=True)
    (dead / "half.json").write_text("{")
    live = store.start("20260101T000000-x-y-cafe")  # this process: kept
    assert store.sweep() == [dead.name] and not dead.exists() and live.exists()
    assert store.records() == []  # a partial folder is never a record
    # two imports of the same file in the same second get two records
    a = import_results(store, GSM8K_047, subject="s", setup="x")
    b = import_results(store, GSM8K_047, subject="s", setup="x")
    assert a.run_id != b.run_id and b.run_id.startswith(a.run_id.rsplit("-", 1)[0])


def test_import_of_real_04_and_03_files_puts_every_headline_on_the_card(tmp_path):
    path = project(tmp_path, leaderboard={"tasks": ["mmlu", "gsm8k"], "metrics": ["acc", "exact_match"]}, old={"tasks": ["arc_challenge", "hellaswag", "winogrande"], "metrics": ["acc", "acc_norm"]})
    store = RunStore(tmp_path / "runs")
    mmlu = import_results(store, MMLU_043, subject="my-lora", setup="leaderboard")
    gsm = import_results(store, GSM8K_047, subject="my-lora", setup="leaderboard")
    old = import_results(store, OLD_03, subject="my-lora", setup="old")
    m = load_manifest(path)
    card = render_card(m, "my-lora")
    text = card.text
    # the group's headline, 5-shot (not the 0 lm-eval wrote for the group), subtasks folded
    assert "### mmlu, 5-shot" in text and "<summary>" in text
    head = next(r for r in mmlu.rows if r.task == "mmlu" and r.metric == "acc")
    assert f"{head.value:.4f} ± {head.stderr:.4f}" in text.split("### mmlu, 5-shot")[1].split("<details>")[0]
    # both gsm8k filters, labelled
    assert "### gsm8k, 5-shot" in text and "exact_match (strict-match)" in text and "exact_match (flexible-extract)" in text
    for r in gsm.rows:
        assert f"{r.value:.4f}" in text
    # 0.3.x numbers, 0-shot
    for r in old.rows:
        if r.metric in ("acc", "acc_norm"):
            assert f"{r.value:.4f}" in text.split(f"### {r.task}, 0-shot")[1]
    assert "imported lm-eval" in text and "Imported numbers are lm-eval results files" in text
    assert "Reproduced numbers come from" not in text  # nothing was reproduced here
    assert check_card(m, card) == []
    # model-index: headlines only (the group, not its 57 subtasks), each with its own few-shot
    parsed = ModelCard(text).data.eval_results
    got = {(r.dataset_name, r.metric_type, (r.dataset_args or {}).get("num_fewshot")): r.metric_value for r in parsed}
    assert got[("mmlu", "acc", "5")] == round(head.value, 4)
    assert not any(name.startswith("mmlu_") for name, _, _ in got)
    strict = next(r for r in gsm.rows if r.filter == "strict-match")
    assert any(r.dataset_name == "gsm8k" and r.metric_name == "exact_match (strict-match)" and r.metric_value == round(strict.value, 4) for r in parsed)
    assert got[("arc_challenge", "acc_norm", "0")] == round(next(r.value for r in old.rows if (r.task, r.metric) == ("arc_challenge", "acc_norm")), 4)


def test_same_task_at_two_shot_counts_stays_two_model_index_entries(tmp_path):
    """ARC at 0 and 25 shots: two tables, and model-index entries that keep their few-shot after
    huggingface_hub parses them (its own writer would fold them into the first one's args)."""
    data = json.loads(OLD_03.read_text())
    data25 = json.loads(OLD_03.read_text())
    data25["config"]["num_fewshot"] = 25
    for task in data25["results"]:
        for k in list(data25["results"][task]):
            if isinstance(data25["results"][task][k], float):
                data25["results"][task][k] = round(data25["results"][task][k] * 0.9, 6)
    (tmp_path / "r25.json").write_text(json.dumps(data25))
    (tmp_path / "r0.json").write_text(json.dumps(data))
    path = project(tmp_path, arc0={"tasks": ["arc_challenge"], "num_fewshot": 0}, arc25={"tasks": ["arc_challenge"], "num_fewshot": 25})
    store = RunStore(tmp_path / "runs")
    import_results(store, tmp_path / "r0.json", subject="my-lora", setup="arc0")
    import_results(store, tmp_path / "r25.json", subject="my-lora", setup="arc25")
    m = load_manifest(path)
    card = render_card(m, "my-lora")
    assert "### arc_challenge, 0-shot" in card.text and "### arc_challenge, 25-shot" in card.text
    parsed = ModelCard(card.text).data.eval_results
    arc = {(r.metric_type, r.dataset_args["num_fewshot"]): r.metric_value for r in parsed if r.dataset_name == "arc_challenge"}
    want0 = data["results"]["arc_challenge"]["acc_norm"]
    want25 = data25["results"]["arc_challenge"]["acc_norm"]
    assert arc[("acc_norm", "0")] == round(want0, 4) and arc[("acc_norm", "25")] == round(want25, 4)
    assert check_card(m, card) == []


def test_nan_never_reaches_card_or_model_index(tmp_path):
    data = json.loads(GSM8K_047.read_text())
    data["results"]["gsm8k"]["exact_match,strict-match"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(data))
    path = project(tmp_path)
    import_results(RunStore(tmp_path / "runs"), tmp_path / "nan.json", subject="my-lora", setup="leaderboard")
    m = load_manifest(path)
    card = render_card(m, "my-lora")
    assert "unavailable: nan in the results file" in card.text
    assert all(r.metric_name != "exact_match (strict-match)" for r in ModelCard(card.text).data.eval_results)
    assert check_card(m, card) == []


def test_card_check_catches_a_headline_missing_from_the_readme(tmp_path, capsys):
    path = project(tmp_path)
    rec = import_results(RunStore(tmp_path / "runs"), MMLU_043, subject="my-lora", setup="leaderboard")
    assert main(["card", "-m", str(path)]) == 0
    readme = tmp_path / "cards" / "my-lora" / "README.md"
    head = next(r for r in rec.rows if r.task == "mmlu" and r.metric == "acc")
    readme.write_text(readme.read_text().replace(f"{head.value:.4f}", "0.9999"))
    capsys.readouterr()
    assert main(["card", "-m", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"mmlu, 5-shot: my-lora's acc {head.value:.4f}" in err and "is not on the card" in err


def test_runs_cli_lists_setup_task_metric_value(tmp_path, capsys):
    path = project(tmp_path)
    runs = tmp_path / "runs"
    assert main(["runs", "-m", str(path), "import", str(GSM8K_047), "--subject", "my-lora", "--setup", "leaderboard"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert main(["runs", "-m", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "strict-match" in l)
    assert run_id in line and "leaderboard" in line and "imported" in line and "gsm8k" in line and " 5 " in line and " ± " in line
    assert main(["runs", "-m", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][0]["origin"] == "imported" and {r["filter"] for r in data["runs"][0]["rows"]} == {"strict-match", "flexible-extract"}
    assert main(["runs", "-m", str(path), "import", str(tmp_path / "nope.json"), "--subject", "a", "--setup", "b"]) == 1
    assert "nope.json: cannot read it" in capsys.readouterr().err
    assert sorted(p.name for p in runs.iterdir()) == [run_id]


def test_compare_refuses_different_few_shot(tmp_path):
    store = RunStore(tmp_path / "runs")
    data = json.loads(OLD_03.read_text())
    (tmp_path / "a.json").write_text(json.dumps(data))
    data["config"]["num_fewshot"] = 25
    (tmp_path / "b.json").write_text(json.dumps(data))
    samples = tmp_path / "samples_arc_challenge_2024-01-01T00-00-00.000000.jsonl"
    samples.write_text("".join(json.dumps({"doc_id": i, "doc_hash": str(i), "acc": float(i % 2)}) + "\n" for i in range(6)))
    a = import_results(store, tmp_path / "a.json", subject="a", setup="x", samples=[samples])
    b = import_results(store, tmp_path / "b.json", subject="b", setup="y", samples=[samples])
    with pytest.raises(EvalError, match="0-shot and run .* is 25-shot"):
        compare_runs(a, b)
    same = compare_runs(a, a, iterations=50)
    assert same["tasks"][0]["diff"] == 0


def test_legacy_records_are_read_but_flagged(tmp_path):
    """A hubkit 0.1 record (provenance.json, no seal) still reads; --check says it cannot be checked."""
    rec_dir = tmp_path / "runs" / "20260101T000000-leaderboard-my-lora-0000aaaa"
    (rec_dir / "out").mkdir(parents=True)
    (rec_dir / "out" / "results_2026-01-01T00-00-00.json").write_text(GSM8K_047.read_text())
    (rec_dir / "provenance.json").write_text(json.dumps({"record_format": 1, "hubkit_version": "0.1.0", "run_id": rec_dir.name, "status": "ok", "setup": "leaderboard", "subject": "my-lora", "strategy": "4bit-lora", "results_files": ["out/results_2026-01-01T00-00-00.json"], "started_at": "2026-01-01T00:00:00+00:00"}))
    path = project(tmp_path)
    (rec,) = RunStore(tmp_path / "runs").records()
    assert not rec.sealed and {r.filter for r in rec.rows} == {"strict-match", "flexible-extract"}
    m = load_manifest(path)
    problems = check_card(m, render_card(m, "my-lora"))
    assert any("has no seal" in p and rec.run_id in p for p in problems)
