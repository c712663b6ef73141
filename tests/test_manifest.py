"""The manifest: what validates, and the exact words a user sees when it does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hubkit.errors import ManifestError
from hubkit.manifest import load_manifest, manifest_json_schema

REPO = Path(__file__).resolve().parents[1]

MINIMAL = {
    "project": {"name": "x", "license": "apache-2.0"},
    "artifacts": {"a": {"kind": "adapter", "path": "adapter", "base_model": "org/base"}},
    "evals": {"arc25": {"tasks": ["arc_challenge"], "num_fewshot": 25}},
}


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "hubkit.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value.problems or [info.value.message]


def test_minimal_manifest_loads_with_defaults(tmp_path):
    m = load_manifest(write(tmp_path, MINIMAL))
    setup = m.evals["arc25"]
    assert setup.strategies == ["4bit-lora", "merged-fp16"]
    assert setup.env == "pinned"
    assert m.artifacts["a"].hub_relation == "adapter"
    assert m.resolve("adapter") == tmp_path / "adapter"


def test_misspelt_key_names_file_field_and_suggestion(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["evals"]["arc25"]["num_fewshots"] = 25
    path = write(tmp_path, data)
    assert problems_of(path) == [f"{path}: evals.arc25.num_fewshots: unknown key (did you mean 'num_fewshot'?)"]


def test_wrong_type_names_expected_type_and_value(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["evals"]["arc25"]["num_fewshot"] = "25-shot"
    path = write(tmp_path, data)
    assert problems_of(path) == [f'{path}: evals.arc25.num_fewshot: expected an integer, got "25-shot"']


def test_every_problem_is_listed_not_just_the_first(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["artifacts"]["a"]["kind"] = "lora"
    data["project"]["licence"] = "mit"
    path = write(tmp_path, data)
    got = problems_of(path)
    assert f"{path}: project.licence: unknown key (did you mean 'license'?)" in got
    assert f"{path}: artifacts.a.kind: expected one of 'adapter', 'merged', 'quantized' or 'full', got \"lora\"" in got


def test_missing_required_field(tmp_path):
    path = write(tmp_path, {"project": {"name": "x"}})
    assert problems_of(path) == [f"{path}: project.license: required field is missing"]


def test_unknown_strategy_is_rejected(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["evals"]["arc25"]["strategies"] = ["8bit-lora"]
    path = write(tmp_path, data)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: evals.arc25.strategies.0: expected one of '4bit-lora'")


def test_dangling_references_are_errors(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["artifacts"]["a"]["merged"] = "nope"
    data["lineage"] = [{"name": "s", "parent": "ghost"}]
    path = write(tmp_path, data)
    got = problems_of(path)
    assert f"{path}: artifacts.a.merged: no artifact named 'nope'" in got
    assert f"{path}: lineage.0.parent: no stage named 'ghost'" in got


def test_data_override_split_names(tmp_path):
    """Split names are the task's own (MMLU's few-shot split is `dev`): the manifest accepts any
    name; `hubkit eval` checks them against the task's config (tests/test_task_shapes.py)."""
    data = json.loads(json.dumps(MINIMAL))
    data["evals"]["arc25"]["data"] = {"arc_challenge": {"files": {"dev": "arc/dev.jsonl", "test": "arc/test.jsonl"}}}
    assert load_manifest(write(tmp_path, data)).evals["arc25"].data["arc_challenge"].files["dev"] == "arc/dev.jsonl"
    data["evals"]["arc25"]["data"]["arc_challenge"]["files"] = {"my split": "arc/test.jsonl"}
    path = write(tmp_path, data)
    assert problems_of(path) == [f"{path}: evals.arc25.data.arc_challenge.files: split name 'my split': expected a name like test, dev or validation"]


def test_license_other_needs_name_and_link(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["project"]["license"] = "other"
    path = write(tmp_path, data)
    assert problems_of(path) == [f"{path}: project: license 'other' needs license_name and license_link"]


def test_bad_repo_id(tmp_path):
    data = json.loads(json.dumps(MINIMAL))
    data["artifacts"]["a"]["repo_id"] = "a/b/c"
    path = write(tmp_path, data)
    assert problems_of(path) == [
        f"{path}: artifacts.a.repo_id: expected a Hub repo id like 'owner/name', got 'a/b/c' (repo id must be in the form 'repo_name' or 'namespace/repo_name')"
    ]


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "project:\n  name: [unclosed\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: not valid YAML (line ")


def test_top_level_must_be_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    assert problems_of(path) == [f"{path}: expected a mapping at the top level, got a list"]


def test_missing_manifest_hints_at_init(tmp_path):
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nope.yaml")
    assert "hubkit init" in info.value.hint


@pytest.mark.parametrize("seed", ["seed000", "seed001", "seed002"])
def test_seed_cards_are_describable(seed):
    """The example manifests carry the facts of the three seed cards and validate."""
    m = load_manifest(REPO / "examples" / seed / "hubkit.yaml")
    assert m.project.name


def test_seed000_facts_survive_parsing():
    m = load_manifest(REPO / "examples" / "seed000" / "hubkit.yaml")
    arc = {c.subject: c for c in m.claims if c.task == "arc_challenge"}
    assert len(arc) == 6
    assert arc["nca-arc-lora"].value == 0.6834 and arc["nca-arc-lora"].stderr == 0.0136
    assert [c.subject for c in m.claims if c.baseline] == ["Mistral-7B-v0.1 (pretrained)"]
    assert [s.name for s in m.lineage] == ["pretrained", "sft", "nca", "nca-hard-margin"]
    assert m.lineage[3].hyperparameters["beta"] == 0.05
    assert m.evals["arc25"].pins["lm-eval"] == "==0.4.5"
    assert sum(d.rows or 0 for k, d in m.datasets.items() if k in m.lineage[2].data) == 8619


def test_json_schema_exports_and_forbids_extra_keys():
    schema = manifest_json_schema()
    assert schema["additionalProperties"] is False
    assert "EvalSetup" in schema["$defs"]
    assert schema["$defs"]["EvalSetup"]["additionalProperties"] is False
    assert "num_fewshot" in schema["$defs"]["EvalSetup"]["properties"]


def test_readme_manifest_reference_is_current():
    """The README's reference is generated from the schema; regenerate with `make docs`."""
    from hubkit.docs import BEGIN, END, manifest_reference

    text = (REPO / "README.md").read_text()
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    assert block == "\n" + manifest_reference(), "README.md manifest reference is stale: run `make docs`"
