"""`hubkit demo`, `hubkit eval --json` and `hubkit runs` as a newcomer runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HUBKIT = [sys.executable, "-m", "hubkit"]


def hubkit(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*HUBKIT, *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))


@pytest.fixture(scope="module")
def demo_run(demo_world, tmp_path_factory):
    """`hubkit demo` over the session's demo world (reused, not rebuilt), as a user runs it: it
    ends serving the Space until Ctrl-C, which is sent once the page has answered."""
    workdir = demo_world.paths.root.parent
    err_path = tmp_path_factory.mktemp("demo-cli") / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([*HUBKIT, "demo", "--workdir", str(workdir)], cwd=workdir, stdout=subprocess.PIPE, stderr=err, text=True, env=dict(os.environ))
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("space\t"):
                    url = line.split("\t", 1)[1].strip()
                    with urllib.request.urlopen(url + "/config", timeout=30) as r:
                        page_config = json.loads(r.read())
                    proc.send_signal(signal.SIGINT)  # Ctrl-C
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = err_path.read_text()
    assert code == 0, stderr[-3000:]
    result = subprocess.CompletedProcess(proc.args, code, "".join(lines), stderr)
    return demo_world, result, page_config


def test_demo_runs_eval_and_compares(demo_run):
    world, proc, _ = demo_run
    outputs = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    assert Path(outputs["runs"]) == world.paths.root / "runs"
    assert "demo world already built at" in proc.stderr
    # the summary table and the paired comparison reach the user
    assert "lora-full arc_challenge local      acc 1.0000" in proc.stderr
    assert "arc_challenge: B - A = +" in proc.stderr and "McNemar p = " in proc.stderr
    # merge, cards and publish to the local hub ran too
    assert Path(outputs["merged:lora-full"]).is_absolute() or (world.paths.root.parent / outputs["merged:lora-full"]).exists()
    for name in ("lora-full", "lora-half", "lora-full-merged"):
        assert outputs[f"repo:{name}"].startswith("http://127.0.0.1:")
        assert (world.paths.root / "cards" / name / "README.md").is_file()
    assert "committed" in proc.stderr and "(front matter parses back" in proc.stderr


def test_demo_ends_serving_the_space(demo_run):
    """The last step deploys the Space to the local hub and serves it on loopback until Ctrl-C."""
    world, proc, page_config = demo_run
    outputs = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    assert outputs["space"].startswith("http://127.0.0.1:")
    assert outputs["space-repo"].endswith("/spaces/demo-user/tiny-mistral-compare")
    # the served app has a column per model: base + the two adapters
    ids = {c.get("props", {}).get("elem_id") for c in page_config["components"]}
    assert {"out-0", "out-1", "out-2"} <= ids and "out-3" not in ids


def test_eval_json_reuses_the_demo_runs(demo_run):
    world, _, _ = demo_run
    proc = hubkit("eval", "--json", cwd=world.paths.root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert {r["subject"]: r["cached"] for r in data["runs"]} == {"base": True, "lora-full": True, "lora-half": True}
    full = [r for r in data["results"] if r["subject"] == "lora-full" and r["metric"] == "acc"]
    assert full[0]["value"] == 1.0 and full[0]["strategy"] == "4bit-lora" and full[0]["data"] == "local"


def test_runs_lists_and_compares(demo_run):
    world, _, _ = demo_run
    proc = hubkit("runs", cwd=world.paths.root)
    assert proc.returncode == 0
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert sorted(r[2] for r in rows) == ["base", "lora-full", "lora-half"]
    ids = {r[2]: r[0] for r in rows}
    proc = hubkit("runs", "compare", ids["base"], ids["lora-half"], "--json", "--iterations", "500", cwd=world.paths.root)
    assert proc.returncode == 0, proc.stderr
    (task,) = json.loads(proc.stdout)["tasks"]
    assert task["task"] == "arc_challenge" and task["n"] == 80 and task["diff"] > 0


def test_runs_compare_unknown_run_is_a_clear_error(demo_run):
    world, _, _ = demo_run
    proc = hubkit("runs", "compare", "nope-a", "nope-b", cwd=world.paths.root)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and "nope-a" in proc.stderr and "Traceback" not in proc.stderr
