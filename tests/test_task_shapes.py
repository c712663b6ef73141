"""lm-eval's own task configs, on local data, with the tiny demo model: every result shape users
report (a group and its subtasks, filtered generation metrics, one task at two few-shot
settings, process_docs tasks, validation-only tasks) from eval to record to card to model-index.

The data rows are synthetic but in each task's real schema; prompts, targets, metrics and
filters are lm-eval's (0.4.13 here). One setup runs six tasks in one lm-eval process and a
second runs ARC 25-shot, so the whole module costs four lm-eval runs.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from hubkit.card import check_card, render_card
from hubkit.errors import EvalError
from hubkit.eval import run_eval
from hubkit.eval.records import RunStore
from hubkit.manifest import load_manifest


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _data(root: Path, arc_rows: dict[str, list[dict]]) -> dict:
    rng = random.Random(0)
    data: dict = {}
    d = root / "data"
    data["arc_challenge"] = {"files": {s: _jsonl(d / "arc" / f"{s}.jsonl", rows) for s, rows in arc_rows.items()}}
    subjects = {"anatomy": "Which organ pumps blood?", "astronomy": "Which planet is red?"}
    mmlu = {"test": [], "dev": []}
    for subject, q in subjects.items():
        for split, n in (("test", 4), ("dev", 5)):
            for i in range(n):
                mmlu[split].append({"question": f"{q} ({i})", "subject": subject, "choices": ["heart", "lung", "Mars", "Venus"], "answer": rng.randrange(4)})
    data["mmlu"] = {"files": {s: _jsonl(d / "mmlu" / f"{s}.jsonl", rows) for s, rows in mmlu.items()}, "subtask_column": "subject"}
    gsm = [{"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?", "answer": f"He has {a} + {b} = {a + b} apples.\n#### {a + b}"} for a, b in ((2, 3), (4, 1), (5, 5), (1, 1), (3, 3), (6, 2), (7, 1), (2, 2))]
    data["gsm8k"] = {"files": {"train": _jsonl(d / "gsm8k" / "train.jsonl", gsm), "test": _jsonl(d / "gsm8k" / "test.jsonl", gsm[:4])}}
    hs = [{"ind": i, "activity_label": "Cooking", "ctx_a": "A man cracks an egg.", "ctx_b": "he", "ctx": "A man cracks an egg. he", "endings": ["fries it.", "sings.", "flies away.", "reads a book."], "source_id": "x", "split": "val", "split_type": "indomain", "label": "0"} for i in range(4)]
    data["hellaswag"] = {"files": {"validation": _jsonl(d / "hellaswag" / "validation.jsonl", hs)}}
    tqa = [{"question": "What colour is the sky?", "mc1_targets": {"choices": ["blue", "green"], "labels": [1, 0]}, "mc2_targets": {"choices": ["blue", "azure", "green"], "labels": [1, 1, 0]}} for _ in range(4)]
    data["truthfulqa_mc2"] = {"files": {"validation": _jsonl(d / "truthfulqa" / "validation.jsonl", tqa)}}
    wg = [{"sentence": "The trophy does not fit in the case because _ is too big.", "option1": "the trophy", "option2": "the case", "answer": "1"} for _ in range(4)]
    data["winogrande"] = {"files": {"validation": _jsonl(d / "winogrande" / "validation.jsonl", wg)}}
    return data


@pytest.fixture(scope="module")
def shapes(demo_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    # the demo base with room for 5-shot GSM8K prompts plus generated tokens (its weights do
    # not depend on the context length: rotary positions)
    base = root / "base"
    shutil.copytree(demo_world.paths.base, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["max_position_embeddings"] = 4096
    (base / "config.json").write_text(json.dumps(cfg))
    arc = {s: [json.loads(line) for line in (demo_world.paths.data / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "validation", "test")}
    data = _data(root, arc)
    common = {"strategies": ["fp32-lora"], "env": "current", "limit": 3, "batch_size": 4, "model_args": {"dtype": "float32", "add_bos_token": True}}
    manifest = {
        "project": {"name": "Task shapes", "license": "apache-2.0"},
        "artifacts": {"lora-full": {"kind": "adapter", "path": str(demo_world.paths.adapters["lora-full"]), "base_model": "hubkit-demo/tiny-mistral", "base_model_path": "base", "repo_id": "demo-user/shapes"}},
        "evals": {
            "shapes": {
                "tasks": ["arc_challenge", "mmlu", "gsm8k", "hellaswag", "truthfulqa_mc2", "winogrande"],
                "metrics": ["acc", "acc_norm", "exact_match"],
                "data": data,
                "gen_kwargs": {"max_gen_toks": 12},
                **common,
            },
            "arc25": {"tasks": ["arc_challenge"], "num_fewshot": 25, "data": {"arc_challenge": data["arc_challenge"]}, **common},
        },
    }
    path = root / "hubkit.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    m = load_manifest(path)
    outcomes = run_eval(m)
    return m, {(o.record.setup, o.subject): o.record for o in outcomes}


def test_every_shape_is_recorded(shapes):
    _, recs = shapes
    rows = {(r.task, r.metric, r.filter): r for r in recs[("shapes", "lora-full")].rows}
    # the group, its subgroup and its two subtasks, all from local data, 0-shot
    mmlu = rows[("mmlu", "acc", "none")]
    assert mmlu.is_group and mmlu.local_data and mmlu.num_fewshot == 0 and mmlu.n == 6
    assert rows[("mmlu_stem", "acc", "none")].group == "mmlu"
    assert {t for t, _, _ in rows if t.startswith("mmlu_") and t != "mmlu_stem"} == {"mmlu_anatomy", "mmlu_astronomy"}
    # gsm8k: its own 5-shot, drawn from the train file, both filters
    strict, flexible = rows[("gsm8k", "exact_match", "strict-match")], rows[("gsm8k", "exact_match", "flexible-extract")]
    assert strict.num_fewshot == flexible.num_fewshot == 5
    for task, metric in (("hellaswag", "acc_norm"), ("truthfulqa_mc2", "acc"), ("winogrande", "acc"), ("arc_challenge", "acc_norm")):
        row = rows[(task, metric, "none")]
        assert row.value is not None and row.local_data and row.num_fewshot == 0, task
    assert recs[("arc25", "lora-full")].rows[0].num_fewshot == 25
    overrides = recs[("shapes", "lora-full")].data_overrides
    assert overrides["mmlu"]["coverage"]["included"] == ["mmlu_anatomy", "mmlu_astronomy"] and overrides["mmlu"]["coverage"]["total"] == 57


def test_card_carries_every_headline_with_its_shots(shapes):
    m, recs = shapes
    card = render_card(m, "lora-full")
    text = card.text
    for title in ("arc_challenge, 0-shot", "arc_challenge, 25-shot", "gsm8k, 5-shot", "hellaswag, 0-shot", "truthfulqa_mc2, 0-shot", "winogrande, 0-shot"):
        assert f"### {title}\n" in text, title
    # a group with local data for 2 of its 57 subtasks says so, in its title and in a note
    assert "### mmlu (2 of 57 subtasks, local data), 0-shot" in text and "so it is not the mmlu score" in text
    assert "exact_match (strict-match)" in text and "exact_match (flexible-extract)" in text
    assert check_card(m, card) == []  # includes: every headline of the records is on the card
    # model-index: each headline once per few-shot setting, parsed back by huggingface_hub to the
    # same values; the 2-subtask mmlu aggregate is not published as an MMLU score
    parsed = ModelCard(text).data.eval_results
    got = {(r.dataset_name, r.metric_name, r.dataset_args["num_fewshot"]): r.metric_value for r in parsed}
    for (setup, subject), rec in recs.items():
        if subject != "lora-full":
            continue
        for row in rec.rows:
            if row.task.startswith("mmlu") or row.metric not in ("acc", "acc_norm", "exact_match"):
                continue
            assert got[(row.task, row.metric_label, str(row.num_fewshot))] == round(row.value, 4), (setup, row)
    assert not any(name.startswith("mmlu") for name, _, _ in got)
    assert ("arc_challenge", "acc_norm", "0") in got and ("arc_challenge", "acc_norm", "25") in got


def test_a_few_shot_setup_without_a_split_for_the_shots_is_refused(shapes, tmp_path):
    """With only a test file, lm-eval would draw the 25 examples from the test documents
    themselves: refused before anything runs, naming the split to add."""
    m, _ = shapes
    data = yaml.safe_load(Path(m._source).read_text())
    data["evals"]["arc25"]["data"]["arc_challenge"]["files"] = {"test": data["evals"]["arc25"]["data"]["arc_challenge"]["files"]["test"]}
    path = Path(m._source).with_name("hubkit-testonly.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(EvalError) as info:
        run_eval(load_manifest(path), setup="arc25", runs_dir=tmp_path / "runs")
    assert "evals.arc25.data.arc_challenge.files: arc_challenge is run 25-shot and draws its examples from its 'train' split; add files.train" in str(info.value)
    assert "test documents themselves" in info.value.hint
    assert RunStore(tmp_path / "runs").records() == []
    # a split the task does not read is named too
    data["evals"]["arc25"]["data"]["arc_challenge"]["files"]["dev"] = data["evals"]["arc25"]["data"]["arc_challenge"]["files"]["test"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(EvalError, match=r"files\.dev: arc_challenge reads no split named 'dev'"):
        run_eval(load_manifest(path), setup="arc25", runs_dir=tmp_path / "runs")
    # data for a task the setup does not run
    data = yaml.safe_load(Path(m._source).read_text())  # arc_challenge's own files are whole again
    data["evals"]["arc25"]["data"]["arc_easy"] = {"files": {"test": data["evals"]["arc25"]["data"]["arc_challenge"]["files"]["test"]}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(EvalError, match=r"evals\.arc25\.data\.arc_easy: not one of this setup's tasks \(arc_challenge\) nor a subtask of its groups"):
        run_eval(load_manifest(path), setup="arc25", runs_dir=tmp_path / "runs")
