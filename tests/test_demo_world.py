"""The demo world: it builds offline, and its adapters measurably beat the base under lm-eval."""

from __future__ import annotations

import json

import pytest

from hubkit.demo.world import make_facts, make_splits
from hubkit.manifest import load_manifest


def test_arc_schema_rows():
    splits = make_splits(make_facts())
    for rows in splits.values():
        for row in rows:
            assert set(row) == {"id", "question", "choices", "answerKey"}
            assert row["choices"]["label"] == ["A", "B", "C", "D"]
            assert row["answerKey"] in row["choices"]["label"]
            assert len(set(row["choices"]["text"])) == 4
    assert make_splits(make_facts()) == splits  # deterministic


def test_world_files_and_manifest(demo_world):
    paths = demo_world.paths
    for adapter in paths.adapters.values():
        assert (adapter / "adapter_config.json").is_file()
        assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((paths.base / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    m = load_manifest(paths.manifest)
    assert set(m.artifacts) == {"tiny-mistral", "lora-full", "lora-half", "lora-full-merged"}
    assert m.artifacts["tiny-mistral"].repo_id == m.artifacts["lora-full"].base_model  # the base is published too
    assert m.artifacts["lora-full"].merged == "lora-full-merged" and m.artifacts["lora-full-merged"].adapter == "lora-full"
    assert m.evals["demo"].tasks == ["arc_challenge"]
    assert m.resolve(m.evals["demo"].data["arc_challenge"].files["test"]) == paths.data / "test.jsonl"
    assert [s.name for s in m.lineage] == ["pretrained", "lora-full", "lora-half"]


def test_world_is_reused(demo_world):
    from hubkit.demo.world import build_world

    msgs = []
    again = build_world(demo_world.paths.root, progress=msgs.append)
    assert msgs == [f"demo world already built at {demo_world.paths.root}"]
    assert again.info == demo_world.info


@pytest.fixture(scope="module")
def scores(demo_world):
    """acc on the demo task, by real lm-eval, for the base and each adapter."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(demo_world.paths.tasks), include_defaults=False)
    out = {}
    for name, peft in [("base", None), *demo_world.paths.adapters.items()]:
        args = {"pretrained": str(demo_world.paths.base), "dtype": "float32", "add_bos_token": True, "device": "cpu"}
        if peft:
            args["peft"] = str(peft)
        res = simple_evaluate(
            model="hf", model_args=args, tasks=["hubkit_demo_arc"], task_manager=tm, batch_size=16,
            num_fewshot=0, log_samples=False, verbosity="ERROR",
        )
        out[name] = res["results"]["hubkit_demo_arc"]["acc,none"]
    print("demo scores (acc):", out)
    return out


def test_adapters_beat_base_and_differ(scores):
    assert scores["base"] < 0.4  # 4 choices: chance is 0.25
    assert scores["lora-full"] > scores["base"] + 0.4
    assert scores["lora-half"] > scores["base"] + 0.2
    assert scores["lora-full"] > scores["lora-half"] + 0.15


def test_demo_command_runs(capsys, demo_world):
    from hubkit.cli import main

    workdir = demo_world.paths.root.parent  # the demo builds into <workdir>/world: reuse it
    assert main(["demo", "--workdir", str(workdir), "--serve-seconds", "0"]) == 0  # serving: test_demo_cli
    out, err = capsys.readouterr()
    assert f"manifest\t{demo_world.paths.manifest}" in out.splitlines()
    assert "target modules:    down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj (7 types)" in err
