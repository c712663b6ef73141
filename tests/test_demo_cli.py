"""`hubkit demo`, `hubkit eval --json` and `hubkit runs` as a newcomer runs them: real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HUBKIT = [sys.executable, "-m", "hubkit"]


def hubkit(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*HUBKIT, *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))


LOAD_FROM_HUB = """
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer
model = AutoPeftModelForCausalLM.from_pretrained("demo-user/tiny-mistral-lora-full")
tok = AutoTokenizer.from_pretrained("demo-user/tiny-mistral-lora-full")
print(type(model).__name__, model.peft_config["default"].base_model_name_or_path, len(tok))
"""


@pytest.fixture(scope="module")
def demo_run(demo_world, tmp_path_factory):
    """`hubkit demo` over the session's demo world (reused, not rebuilt), as a user runs it: it
    ends serving the hub and the Space until Ctrl-C, which is sent once the Space's page has
    answered and a published adapter has been loaded from the hub by a fresh process."""
    workdir = demo_world.paths.root.parent
    tmp = tmp_path_factory.mktemp("demo-cli")
    err_path = tmp / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([*HUBKIT, "demo", "--workdir", str(workdir), "--hub-port", "0"], cwd=workdir, stdout=subprocess.PIPE, stderr=err, text=True, env=dict(os.environ))
        lines, seen, loaded = [], {}, None
        try:
            for line in proc.stdout:
                lines.append(line)
                if "\t" in line:
                    key, value = line.rstrip("\n").split("\t", 1)
                    seen[key] = value
                if "space" in seen and "hub" in seen and loaded is None:
                    with urllib.request.urlopen(seen["space"] + "/config", timeout=30) as r:
                        page_config = json.loads(r.read())
                    # a user elsewhere loads the published adapter (and, through its config, the
                    # published base) from the demo's hub, with an empty cache
                    env = {**os.environ, "HF_ENDPOINT": seen["hub"], "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp / "fresh-hf-home")}
                    loaded = subprocess.run([sys.executable, "-c", LOAD_FROM_HUB], capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
                    proc.send_signal(signal.SIGINT)  # Ctrl-C
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = err_path.read_text()
    assert code == 0, stderr[-3000:]
    result = subprocess.CompletedProcess(proc.args, code, "".join(lines), stderr)
    return demo_world, result, page_config, loaded


def summary_acc(stderr: str) -> dict[str, float]:
    """subject -> acc from the eval summary the demo prints (the acc row of arc_challenge)."""
    found = {}
    for line in stderr.splitlines():
        m = re.match(r"^\s+(base|lora-full|lora-half)\s+arc_challenge\b.*?\sacc\s+([01]\.\d{4})\b", line)
        if m:
            found[m[1]] = float(m[2])
    return found


def test_demo_runs_eval_and_compares(demo_run):
    world, proc, _, _ = demo_run
    outputs = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    assert Path(outputs["runs"]) == world.paths.root / "runs"
    assert "demo world already built at" in proc.stderr
    # the summary table and the paired comparison reach the user; the adapters learned (the
    # exact digits differ between CPUs: 1.0 on one machine, 0.9875 on another)
    accs = summary_acc(proc.stderr)
    assert accs["lora-full"] >= 0.9 and accs["lora-full"] > accs["lora-half"] > accs["base"], accs
    assert "arc_challenge: B - A = +" in proc.stderr and "McNemar p = " in proc.stderr
    # merge, cards and publish to the local hub ran too
    assert Path(outputs["merged:lora-full"]).is_absolute() or (world.paths.root.parent / outputs["merged:lora-full"]).exists()
    for name in ("tiny-mistral", "lora-full", "lora-half", "lora-full-merged"):
        assert outputs[f"repo:{name}"].startswith(outputs["hub"] + "/")
        assert (world.paths.root / "cards" / name / "README.md").is_file()
    assert "committed" in proc.stderr and "(front matter parses back" in proc.stderr


def test_demo_ends_serving_the_space(demo_run):
    """The last step deploys the Space to the local hub and serves it on loopback until Ctrl-C."""
    world, proc, page_config, _ = demo_run
    outputs = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    assert outputs["space"].startswith("http://127.0.0.1:")
    assert outputs["space-repo"].endswith("/spaces/demo-user/tiny-mistral-compare")
    # the served app has a column per model: base + the two adapters
    ids = {c.get("props", {}).get("elem_id") for c in page_config["components"]}
    assert {"out-0", "out-1", "out-2"} <= ids and "out-3" not in ids


def test_published_adapter_loads_from_the_demo_hub(demo_run):
    """The adapter and its base were both published, so peft loads the adapter from the hub alone."""
    _, _, _, loaded = demo_run
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["PeftModelForCausalLM", "hubkit-demo/tiny-mistral", loaded.stdout.split()[-1]]


def test_eval_json_reuses_the_demo_runs(demo_run):
    world, _, _, _ = demo_run
    proc = hubkit("eval", "--json", cwd=world.paths.root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert {r["subject"]: r["cached"] for r in data["runs"]} == {"base": True, "lora-full": True, "lora-half": True}
    acc = {r["subject"]: r for r in data["results"] if r["metric"] == "acc"}
    full = acc["lora-full"]
    assert full["value"] >= 0.9 and full["strategy"] == "4bit-lora" and full["data"] == "local"
    assert full["value"] > acc["lora-half"]["value"] > acc["base"]["value"]


def test_runs_lists_and_compares(demo_run):
    world, _, _, _ = demo_run
    proc = hubkit("runs", cwd=world.paths.root)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:8] == ["run", "status", "setup", "subject", "strategy", "task", "shots", "metric"]
    assert sum(" lora-full " in line and " arc_challenge " in line and " acc " in line and " ± " in line for line in lines) == 1
    proc = hubkit("runs", "--json", cwd=world.paths.root)
    runs = json.loads(proc.stdout)["runs"]
    assert sorted(r["subject"] for r in runs) == ["base", "lora-full", "lora-half"]
    ids = {r["subject"]: r["run_id"] for r in runs}
    proc = hubkit("runs", "compare", ids["base"], ids["lora-half"], "--json", "--iterations", "500", cwd=world.paths.root)
    assert proc.returncode == 0, proc.stderr
    (task,) = json.loads(proc.stdout)["tasks"]
    assert task["task"] == "arc_challenge" and task["n"] == 80 and task["diff"] > 0


def test_runs_compare_unknown_run_is_a_clear_error(demo_run):
    world, _, _, _ = demo_run
    proc = hubkit("runs", "compare", "nope-a", "nope-b", cwd=world.paths.root)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and "nope-a" in proc.stderr and "Traceback" not in proc.stderr
