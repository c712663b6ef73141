"""One process per setup: the base loaded and lm-eval imported once, adapters evaluated in turn.

Real lm-eval, peft and bitsandbytes on the demo world. What users rely on: the shared process
gives exactly the per-sample results of separate runs, each subject keeps a record of its own
that reruns it alone, and one adapter's failure ends only its own attempt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hubkit.errors import EvalError
from hubkit.eval import run_eval
from hubkit.eval.records import RunStore, read_samples
from hubkit.manifest import load_manifest


def variant(world, name: str, setup_changes: dict, artifacts: dict | None = None) -> Path:
    data = yaml.safe_load(world.paths.manifest.read_text())
    data["evals"]["demo"].update(setup_changes)
    data["artifacts"].update(artifacts or {})
    path = world.paths.root / f"hubkit-{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def per_sample(record) -> list[tuple]:
    """What each document got: its hash, the model's raw and filtered responses, its scores."""
    rows = read_samples(record.samples_file("arc_challenge"))
    return [(r["doc_hash"], r["prompt_hash"], r["resps"], r["filtered_resps"], r["acc"], r["acc_norm"]) for r in rows]


def numbers(record) -> list[tuple]:
    return [(r.task, r.metric, r.value, r.stderr, r.n) for r in record.rows]


def test_shared_process_gives_the_per_sample_results_of_separate_runs(demo_world, tmp_path):
    """fp32-lora: base + two adapters in one process vs each in a process of its own (the base
    and lora-half as separate lm-eval CLI runs, lora-full through its record's reproduce line)."""
    m = load_manifest(variant(demo_world, "shared-fp32", {"strategies": ["fp32-lora"], "limit": 24}))
    shared = {o.subject: o.record for o in run_eval(m, runs_dir=tmp_path / "shared")}
    separate = {o.subject: o.record for o in run_eval(m, artifact="lora-half", runs_dir=tmp_path / "separate", scaleout={"one_process": False})}
    assert set(shared) == {"base", "lora-full", "lora-half"} and set(separate) == {"base", "lora-half"}
    for subject in separate:
        assert per_sample(shared[subject]) == per_sample(separate[subject]), subject
        assert numbers(shared[subject]) == numbers(separate[subject]), subject
        assert len(per_sample(shared[subject])) == 24
    # separate runs recorded lm-eval's own command; the shared ones the runner and a call of
    # their own subject, naming the subjects they shared the process with
    assert separate["lora-half"].command.split()[1:3] == ["-m", "lm_eval"]
    assert all(len(per_sample(rec)) == 24 for rec in shared.values())
    for subject, rec in shared.items():
        (attempt,) = rec.attempts
        assert Path(attempt.command[1]).name == "runner_multi.py" and attempt.command[2].endswith("call.json")
        assert sorted(rec.call["ran_with"]) == sorted(set(shared) - {subject})
        assert rec.call["peft"] == (None if subject == "base" else str(demo_world.paths.adapters[subject]))
    # the record of a subject that shared a process reruns it alone, with the same samples
    out = tmp_path / "alone"
    rec = shared["lora-full"]
    proc = subprocess.run(rec.reproduce.replace(" reproduced", f" {out}"), shell=True, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (samples,) = out.rglob("samples_*.jsonl")
    again = [(r["doc_hash"], r["prompt_hash"], r["resps"], r["filtered_resps"], r["acc"], r["acc_norm"]) for r in read_samples(samples)]
    assert again == per_sample(rec)


@pytest.mark.slow
def test_shared_4bit_gives_the_per_sample_results_of_separate_runs(demo_world, tmp_path):
    """The demo's own setup: base (fp32) and both adapters on one NF4 base, vs separate runs."""
    m = load_manifest(demo_world.paths.manifest)
    shared = {o.subject: o.record for o in run_eval(m, runs_dir=tmp_path / "shared")}
    separate = {o.subject: o.record for o in run_eval(m, runs_dir=tmp_path / "separate", scaleout={"one_process": False})}
    for subject in ("base", "lora-full", "lora-half"):
        assert shared[subject].strategy == separate[subject].strategy
        assert per_sample(shared[subject]) == per_sample(separate[subject]), subject
        assert numbers(shared[subject]) == numbers(separate[subject]), subject
    assert shared["lora-full"].call["bnb_4bit_quant_type"] == "nf4" and shared["lora-full"].call["quantize"] == "4bit"


def test_one_failing_adapter_ends_only_its_own_attempt(demo_world, tmp_path):
    """An adapter whose weights do not fit its config (r=8 declared, r=16 saved) fails inside the
    shared process; the base and the other adapter, in that same process, are recorded."""
    broken = demo_world.paths.root / "adapters-broken" / "lora-broken"
    if not broken.exists():
        shutil.copytree(demo_world.paths.adapters["lora-half"], broken)
        cfg = json.loads((broken / "adapter_config.json").read_text())
        cfg["r"] = 8
        (broken / "adapter_config.json").write_text(json.dumps(cfg))
    full = yaml.safe_load(demo_world.paths.manifest.read_text())["artifacts"]["lora-full"]
    art = {k: v for k, v in full.items() if k not in ("merged", "datasets", "stage", "training", "training_metrics", "summary")}
    path = variant(
        demo_world, "broken", {"strategies": ["vllm-lora", "fp32-lora"], "limit": 12, "artifacts": ["lora-full", "lora-broken"]},
        {"lora-broken": {**art, "path": "adapters-broken/lora-broken", "repo_id": "demo-user/broken"}},
    )  # fmt: skip
    with pytest.raises(EvalError) as info:
        run_eval(load_manifest(path), runs_dir=tmp_path / "runs")
    assert "every strategy failed for demo/lora-broken: vllm-lora: vllm is not installed" in str(info.value)
    assert "; fp32-lora:" in str(info.value)
    assert "lora-full" not in str(info.value) and "demo/base" not in str(info.value)
    records = {r.subject: r for r in RunStore(tmp_path / "runs").records()}
    assert records["base"].ok and records["lora-full"].ok and not records["lora-broken"].ok
    # vllm-lora could not run here (no vllm, no GPU): recorded as unavailable, nothing started,
    # and the adapters falling back to fp32-lora still shared one process with the base
    skipped, ok = records["lora-full"].attempts
    assert (skipped.strategy, skipped.status, skipped.command, skipped.exit_code) == ("vllm-lora", "unavailable", None, None)
    assert ok.status == "ok" and records["lora-full"].strategy == "fp32-lora"
    assert records["lora-full"].fallback_reason.startswith("vllm-lora: vllm is not installed")
    assert sorted(records["lora-full"].call["ran_with"]) == ["base", "lora-broken"]  # it shared their process
    _, attempt = records["lora-broken"].attempts
    assert attempt.exit_code == 1 and "size mismatch" in (attempt.reason + attempt.log_tail)
    assert (records["lora-broken"].path / attempt.log).read_text().count("Traceback") == 1
    assert numbers(records["lora-full"])[0][2] >= 0.75  # 12 documents, far above chance


def test_vllm_lora_is_named_unavailable_without_vllm_or_a_gpu(demo_world, tmp_path):
    """Only vllm-lora, no base: nothing can run here, nothing is started, and each adapter's
    record names the strategy and why; the lm-eval invocation it would run is vLLM with LoRA."""
    from hubkit.eval.core import STRATEGIES, plan_subjects, prepare_setup

    model_args = {"dtype": "float32", "add_bos_token": True, "gpu_memory_utilization": 0.5, "max_loras": 2}
    m = load_manifest(variant(demo_world, "vllm", {"strategies": ["vllm-lora"], "limit": 4, "model_args": model_args}))
    with pytest.raises(EvalError, match=r"demo/lora-full: vllm-lora: vllm is not installed in the eval environment"):
        run_eval(m, runs_dir=tmp_path / "runs", include_base=False)
    records = {r.subject: r for r in RunStore(tmp_path / "runs").records()}
    assert set(records) == {"lora-full", "lora-half"}
    for rec in records.values():
        (attempt,) = rec.attempts
        assert not rec.ok and rec.strategy is None
        assert (attempt.status, attempt.command, attempt.call, attempt.exit_code) == ("unavailable", None, None, None)
        assert not (rec.path / "attempts").exists()  # no process was started
        assert rec.fallback_reason == f"vllm-lora: {attempt.reason}"

    ctx = prepare_setup(m, "demo", store=RunStore(tmp_path / "plan"))
    (plan,) = plan_subjects(ctx, "lora-half", False)
    argv = STRATEGIES["vllm-lora"].build(ctx, plan.subject, tmp_path / "a", None, None).argv
    assert argv[argv.index("--model") + 1] == "vllm" and "--device" not in argv
    args = dict(kv.split("=", 1) for kv in argv[argv.index("--model_args") + 1].split(","))
    assert args["lora_local_path"] == str(demo_world.paths.adapters["lora-half"]) and args["max_lora_rank"] == "16"
    assert args["gpu_memory_utilization"] == "0.5" and args["max_loras"] == "2" and args["dtype"] == "auto"
    shared = STRATEGIES["vllm-lora"].build(ctx, plan.subject, tmp_path / "b", None, None, shared=True).call
    assert shared["strategy"] == "vllm-lora" and shared["vllm_kwargs"] == {"gpu_memory_utilization": 0.5, "max_loras": 2}
    # the HF strategies do not pass vLLM's engine settings to transformers
    hf = STRATEGIES["fp32-lora"].build(ctx, plan.subject, tmp_path / "c", None, None).argv
    assert "gpu_memory_utilization" not in hf[hf.index("--model_args") + 1]


@pytest.mark.gpu
def test_vllm_lora_serves_both_adapters_from_one_engine(demo_world, tmp_path):
    """On a CUDA machine with vllm installed: both adapters evaluated by one vLLM engine (one
    process, a LoRARequest each), far above chance like the HF path."""
    m = load_manifest(variant(demo_world, "vllm-gpu", {"strategies": ["vllm-lora"], "limit": 24, "model_args": {"dtype": "float32", "add_bos_token": True, "gpu_memory_utilization": 0.3}}))
    got = {o.subject: o.record for o in run_eval(m, runs_dir=tmp_path / "runs", include_base=False)}
    for subject, rec in got.items():
        assert rec.ok and rec.strategy == "vllm-lora", rec.fallback_reason
        assert rec.call["ran_with"] == [s for s in got if s != subject]
        assert len(per_sample(rec)) == 24
    assert numbers(got["lora-full"])[0][2] >= 0.75


def test_a_unit_with_several_gpus_runs_lm_evals_own_data_parallelism(demo_world, tmp_path):
    """More than one GPU per unit: each subject alone under `accelerate launch -m lm_eval`
    (lm-eval's data parallelism loads the model itself, so no shared process)."""
    from hubkit.eval.core import STRATEGIES, plan_subjects, prepare_setup, shareable

    m = load_manifest(variant(demo_world, "dp", {"strategies": ["bf16-lora"]}))
    ctx = prepare_setup(m, "demo", store=RunStore(tmp_path / "plan"), gpus=2)
    (plan,) = plan_subjects(ctx, "lora-full", False)
    argv = STRATEGIES["bf16-lora"].build(ctx, plan.subject, tmp_path / "a", None, None).argv
    assert argv[1:6] == ["-m", "accelerate.commands.launch", "--num_processes", "2", "-m"] and argv[6] == "lm_eval"
    assert not shareable(ctx, "bf16-lora") and not shareable(ctx, "base")
    one = prepare_setup(m, "demo", store=RunStore(tmp_path / "plan"), gpus=1)
    assert shareable(one, "bf16-lora")


@pytest.mark.gpu
def test_shared_4bit_on_cuda_gives_the_per_sample_results_of_separate_runs(demo_world, tmp_path):
    """The 4-bit CUDA path: base and both adapters on one NF4 base in one process, vs separate runs."""
    m = load_manifest(variant(demo_world, "shared-cuda", {"strategies": ["4bit-lora"], "limit": 40}))
    shared = {o.subject: o.record for o in run_eval(m, runs_dir=tmp_path / "shared")}
    separate = {o.subject: o.record for o in run_eval(m, runs_dir=tmp_path / "separate", scaleout={"one_process": False})}
    for subject in ("base", "lora-full", "lora-half"):
        assert shared[subject].device.startswith("cuda") and shared[subject].ok
        assert per_sample(shared[subject]) == per_sample(separate[subject]), subject
    assert shared["lora-full"].strategy == "4bit-lora" and sorted(shared["lora-full"].call["ran_with"]) == ["base", "lora-half"]


# -- settings, shards, the matrix view (no lm-eval) ------------------------------------------------------


def test_scaleout_settings_merge_overrides_and_name_a_bad_one(demo_world):
    from hubkit.eval.units import effective_settings, shards

    m = load_manifest(demo_world.paths.manifest)
    s = effective_settings(m, {"resources": {"gpus": 2, "mem_gb": None}, "slurm": {"partition": "gpu"}, "task_shards": 3})
    assert s.resources.gpus == 2 and s.resources.time_min == 120 and s.slurm.partition == "gpu" and s.task_shards == 3
    assert s.executor == "local" and s.one_process is True
    with pytest.raises(EvalError, match=r"scaleout\.resources\.gpus"):
        effective_settings(m, {"resources": {"gpus": -1}})
    assert shards(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert shards(["a"], 4) == [["a"]]


def test_manifest_scaleout_section_is_checked(tmp_path, demo_world):
    from hubkit.errors import ManifestError

    data = yaml.safe_load(demo_world.paths.manifest.read_text())
    data["scaleout"] = {"executor": "slurm", "slurm": {"partition": "debug", "sbatch": {"constraint": "a100"}}, "resources": {"gpus": 1, "time_min": 30}}
    data["evals"]["demo"]["resources"] = {"gpus": 2, "mem_gb": 64}
    path = demo_world.paths.root / "hubkit-scaleout.yaml"
    path.write_text(yaml.safe_dump(data))
    m = load_manifest(path)
    assert m.scaleout.executor == "slurm" and m.evals["demo"].resources.mem_gb == 64
    data["scaleout"]["executor"] = "kubernetes"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=r"scaleout\.executor"):
        load_manifest(path)


def test_runs_status_shows_the_matrix(tmp_path):
    from click.testing import CliRunner

    from hubkit.cli import cli
    from hubkit.scaleout import Matrix, UnitStatus

    runs = tmp_path / "runs"
    Matrix(runs / ".scaleout" / "matrix.json").save(
        {
            "demo__base__1": UnitStatus("demo__base__1", "done", "slurm", job_id="7_0", started_at=100.0, ended_at=161.0),
            "demo__lora-half__2": UnitStatus("demo__lora-half__2", "cancelled", "slurm", job_id="7_1", started_at=100.0, ended_at=130.0, error="Slurm job 7_1 was cancelled"),
        }
    )
    result = CliRunner().invoke(cli, ["runs", "--runs-dir", str(runs), "status"])
    assert result.exit_code == 0, result.output
    assert "2 units: 0 queued, 0 running, 1 done, 0 failed, 1 cancelled" in result.output
    assert "demo__lora-half__2  cancelled  7_1  30.0s  Slurm job 7_1 was cancelled" in result.output
    as_json = json.loads(CliRunner().invoke(cli, ["runs", "--runs-dir", str(runs), "status", "--json"]).output)
    assert as_json["units"]["demo__base__1"]["state"] == "done"
    empty = CliRunner().invoke(cli, ["runs", "--runs-dir", str(tmp_path / "none"), "status"])
    assert empty.exit_code == 0 and "no units recorded" in empty.output
