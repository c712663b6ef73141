"""lm-eval results files of every version, read into typed rows: real files from public
repositories (tests/data/real/lm_eval, sources in SOURCES.md), nothing written here by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hubkit.eval.results import ResultRow, detect_version, file_facts, parse_results

REAL = Path(__file__).parent / "data" / "real" / "lm_eval"
FILES = sorted(REAL.glob("*.json"))


def load(name: str) -> dict:
    return json.loads((REAL / name).read_text())


def rows_of(name: str) -> list[ResultRow]:
    return parse_results(load(name))


def find(rows, task, metric, filt="none") -> ResultRow:
    (row,) = [r for r in rows if (r.task, r.metric, r.filter) == (task, metric, filt)]
    return row


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_number_in_every_file_becomes_a_row(path):
    """Each metric value lm-eval wrote (tasks and groups, any version) is a row with that value;
    its stderr rides along. Nothing is dropped, nothing invented."""
    data = json.loads(path.read_text())
    rows = parse_results(data)
    by = {(r.task, r.metric, r.filter): r for r in rows}
    expected = 0
    for section in ("results", "groups"):
        for task, metrics in (data.get(section) or {}).items():
            for key, value in metrics.items():
                if key in ("alias", "name", "samples", "sample_len") or "_stderr" in key or isinstance(value, (dict, list)):
                    continue
                metric, _, filt = key.partition(",")
                row = by[(task, metric, filt or "none")]
                expected += section == "results" or task not in data["results"]
                if isinstance(value, (int, float)) and math.isfinite(value):
                    assert row.value == pytest.approx(float(value))
                stderr = metrics.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
                if isinstance(stderr, (int, float)):
                    assert row.stderr == pytest.approx(stderr)
                else:
                    assert row.stderr is None  # "N/A" or absent: no stderr, never a made-up one
    assert len(rows) == expected


def test_lm_eval_03_keys_without_filters():
    rows = rows_of("lm_eval-0.3-llama-7b-arc-hellaswag-winogrande-0shot.json")
    assert detect_version(load("lm_eval-0.3-llama-7b-arc-hellaswag-winogrande-0shot.json")) == "0.3"
    acc = find(rows, "arc_challenge", "acc_norm")
    assert acc.filter == "none" and acc.stderr is not None and acc.num_fewshot == 0
    five = rows_of("lm_eval-0.3-llama-7b-hendrycksTest-5shot.json")
    assert {r.num_fewshot for r in five} == {5}  # one global few-shot in 0.3.x's config
    ppl = find(rows_of("lm_eval-0.3-pythia-160m-zeroshot-lambada-ppl-hendrycksTest.json"), "lambada_openai", "ppl")
    assert ppl.higher_is_better is False  # 0.3.x has no higher_is_better: known lower-is-better names


def test_mmlu_group_headline_with_its_real_few_shot():
    """lm-eval 0.4.3 reports the mmlu group as 0-shot in n-shot although every subtask ran
    5-shot; the group row takes its subtasks' few-shot, and folds them under it."""
    name = "lm_eval-0.4.3-mmlu-group-5shot.json"
    assert load(name)["n-shot"]["mmlu"] == 0
    rows = rows_of(name)
    mmlu = find(rows, "mmlu", "acc")
    assert mmlu.is_group and mmlu.group is None and mmlu.num_fewshot == 5
    assert mmlu.n == 14042  # the subtasks' documents, summed
    humanities = find(rows, "mmlu_humanities", "acc")
    assert humanities.is_group and humanities.group == "mmlu"
    anatomy = find(rows, "mmlu_anatomy", "acc")
    assert not anatomy.is_group and anatomy.group == "mmlu_stem" and anatomy.num_fewshot == 5


def test_plain_tasks_listed_in_group_subtasks_are_not_groups():
    rows = rows_of("lm_eval-0.4.7post-llama-3.2-1b-mmlu-group-arc-hellaswag-lambada.json")
    arc = find(rows, "arc_challenge", "acc_norm")
    assert not arc.is_group and arc.group is None and arc.num_fewshot == 0
    assert find(rows, "mmlu", "acc").is_group


def test_old_group_inside_results_is_one_row():
    """Up to 0.4.2 a group's entry is in both `results` and `groups`: one headline row."""
    rows = rows_of("lm_eval-0.4.2post-wmdp-group-in-results.json")
    (wmdp,) = [r for r in rows if r.task == "wmdp"]
    assert wmdp.is_group and wmdp.metric == "exact_match" and wmdp.alias == "wmdp"
    subtasks = [r for r in rows if r.task.startswith("wmdp_")]
    assert len(subtasks) == 3 and all(r.group == "wmdp" and not r.is_group for r in subtasks)


def test_gsm8k_filters_are_separate_rows():
    rows = rows_of("lm_eval-0.4.7-gsm8k-5shot-strict-flexible.json")
    strict, flexible = find(rows, "gsm8k", "exact_match", "strict-match"), find(rows, "gsm8k", "exact_match", "flexible-extract")
    assert strict.value != flexible.value and strict.num_fewshot == flexible.num_fewshot == 5
    assert strict.metric_label == "exact_match (strict-match)" and strict.key == "exact_match,strict-match"


def test_lower_is_better_from_the_file():
    rows = rows_of("lm_eval-0.4.12plus-fixture-wikitext-word-perplexity.json")
    assert find(rows, "wikitext", "word_perplexity").higher_is_better is False


def test_na_stderr_is_no_stderr():
    rows = rows_of("lm_eval-0.4.9.2-perplexity-na-stderr.json")
    assert all(r.stderr is None and r.value is not None for r in rows)


def test_nan_and_text_values_are_unavailable_with_a_reason():
    data = load("lm_eval-0.4.7-gsm8k-5shot-strict-flexible.json")
    data["results"]["gsm8k"]["exact_match,strict-match"] = float("nan")
    data["results"]["gsm8k"]["exact_match,flexible-extract"] = "oops"
    rows = parse_results(data)
    nan, text = find(rows, "gsm8k", "exact_match", "strict-match"), find(rows, "gsm8k", "exact_match", "flexible-extract")
    assert nan.value is None and "nan" in nan.unavailable
    assert text.value is None and "not a number" in text.unavailable


def test_not_a_results_file():
    with pytest.raises(ValueError, match="not an lm-eval results file"):
        parse_results({"doc_id": 0})


def test_file_facts_carry_provenance():
    facts = file_facts(load("lm_eval-0.4.8-gptneo-truthfulqa-mc1-mc2-winogrande.json"))
    assert facts["lm_eval_version"] == "0.4.8" and facts["model"]
    old = file_facts(load("lm_eval-0.3-llama-7b-hendrycksTest-5shot.json"))
    assert old["lm_eval_version"] == "0.3" and isinstance(old["model_args"], str) and old["num_fewshot"] == 5
