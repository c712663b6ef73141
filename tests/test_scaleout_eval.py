"""`hubkit eval` on the executors that are not this machine: a real one-node Slurm cluster
(tests/slurm_fixture.py) driven through `--executor slurm`, and Hugging Face Jobs through the
genuine huggingface_hub client against the local hub (which runs the jobs on this machine).

What users rely on: the demo's matrix runs as Slurm jobs and its records equal the local ones;
a unit killed with scancel makes `hubkit eval` fail naming it, and the rerun runs that unit
alone; hf-jobs sends the Jobs API the requests it expects, the token only as a job secret.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slurm_fixture import slurm_cluster  # noqa: F401 - the fixture is used by name

from hubkit.eval import run_eval
from hubkit.eval.records import RunStore, read_samples
from hubkit.manifest import load_manifest


def variant(world, name: str, changes: dict, top: dict | None = None) -> Path:
    data = yaml.safe_load(world.paths.manifest.read_text())
    data["evals"]["demo"].update(changes)
    data.update(top or {})
    path = world.paths.root / f"hubkit-{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def per_sample(record) -> list[tuple]:
    rows = read_samples(record.samples_file("arc_challenge"))
    return [(r["doc_hash"], r["prompt_hash"], r["resps"], r["filtered_resps"], r["acc"], r["acc_norm"]) for r in rows]


def numbers(record) -> list[tuple]:
    return [(r.task, r.metric, r.value, r.stderr, r.n) for r in record.rows]


def records(runs: Path) -> dict:
    return {r.subject: r for r in RunStore(runs).records() if r.ok}


def hubkit(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, timeout=900, **kw)


# -- Slurm -------------------------------------------------------------------------------------------


@pytest.mark.slow  # four lm-eval processes, two at a time on the one node: minutes on 2 busy cores
def test_demo_matrix_on_slurm_resumes_after_a_scancelled_unit(slurm_cluster, demo_world, tmp_path):  # noqa: F811
    """Base + two adapters, one unit each, as one Slurm job array; lora-half's job is scancelled
    (while it waits for a free core: a pending array task leaves squeue without a trace); the
    rerun submits that unit alone; every record equals the one a local run writes."""
    path = variant(demo_world, "slurm", {"strategies": ["fp32-lora"], "limit": 8}, {"scaleout": {"slurm": {"partition": slurm_cluster.partition}}})
    local = {o.subject: o.record for o in run_eval(load_manifest(path), runs_dir=tmp_path / "local", executor="local")}

    runs = tmp_path / "runs"
    state = runs / ".scaleout" / "matrix.json"
    argv = ["eval", "-m", str(path), "--executor", "slurm", "--subjects-per-unit", "1", "--poll-interval", "0.5", "--runs-dir", str(runs)]
    first = subprocess.Popen([sys.executable, "-m", "hubkit", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cancelled = None
    deadline = time.time() + 300
    while cancelled is None and first.poll() is None and time.time() < deadline:
        units = json.loads(state.read_text())["units"] if state.is_file() else {}
        half = next((s for u, s in units.items() if "lora-half" in u), None)
        if half and half["job_id"] and half["state"] in ("queued", "running"):
            subprocess.run(["scancel", half["job_id"]], check=True, timeout=60)
            cancelled = half
        time.sleep(0.2)
    out, err = first.communicate(timeout=600)
    assert cancelled is not None, err[-3000:]
    assert first.returncode == 1, out + err[-3000:]
    assert f"unit {cancelled['unit_id']} cancelled" in err and "runs only the units that did not finish" in err, err[-3000:]
    status = hubkit("runs", "--runs-dir", str(runs), "status", "--json")
    units = json.loads(status.stdout)["units"]
    assert sorted(s["state"] for s in units.values()) == ["cancelled", "done", "done"]
    assert len({s["job_id"].split("_")[0] for s in units.values()}) == 1  # one job array
    assert set(records(runs)) == {"base", "lora-full"}

    second = hubkit(*argv)
    assert second.returncode == 0, second.stderr[-3000:]
    after = json.loads(state.read_text())["units"]
    rerun = [u for u in after if after[u]["job_id"] != units[u]["job_id"]]
    assert rerun == [cancelled["unit_id"]] and after[rerun[0]]["state"] == "done"
    for u, s in units.items():
        if u != cancelled["unit_id"]:
            assert after[u] == s  # not run again
    assert "base: cached run" in second.stderr and "lora-full: cached run" in second.stderr

    on_slurm = records(runs)
    assert set(on_slurm) == set(local) == {"base", "lora-full", "lora-half"}
    for subject, rec in on_slurm.items():
        assert rec.strategy == local[subject].strategy
        assert rec.cache_key == local[subject].cache_key
        assert per_sample(rec) == per_sample(local[subject]), subject
        assert numbers(rec) == numbers(local[subject]), subject
        where = rec.hardware["executor"]
        unit = next(s for u, s in after.items() if f"__{subject}__" in u)
        assert where["kind"] == "slurm" and where["job_id"] == unit["job_id"]
        assert Path(where["stdout"]).is_file()  # submitit's log, kept where the record says
        assert "executor" not in local[subject].hardware


# -- HF Jobs -----------------------------------------------------------------------------------------


@pytest.fixture
def jobs_hub(tmp_path):
    from hubkit.hub.server import LocalHub

    token = "hf_" + secrets.token_hex(16)
    with LocalHub(tmp_path / "hub", token=token, record=True, run_jobs=True) as hub:
        yield hub, token


@pytest.mark.slow  # lm-eval twice (the local reference and the job)
def test_hf_jobs_requests_and_records(jobs_hub, demo_world, tmp_path):
    """`--executor hf-jobs`: the base on the (local) Hub, each unit a job whose requests carry the
    worker's command, the Hub endpoint, the flavor, a timeout and the token as a secret only; the
    records come back through the exchange repo and equal the local ones."""
    from huggingface_hub import HfApi

    from hubkit.hub.client import hub_session

    hub, token = jobs_hub
    api = HfApi(endpoint=hub.url, token=token)
    with hub_session(hub.url):  # the tests run offline; a loopback hub is allowed
        api.create_repo("hubkit-demo/tiny-mistral")
        api.upload_folder(folder_path=str(demo_world.paths.root / "base"), repo_id="hubkit-demo/tiny-mistral")
    path = variant(demo_world, "hf-jobs", {"strategies": ["fp32-lora"], "limit": 8, "artifacts": ["lora-half"]}, {"scaleout": {"hf_jobs": {"flavor": "cpu-upgrade", "repo": "local-user/eval-exchange"}}})
    local = {o.subject: o.record for o in run_eval(load_manifest(path), runs_dir=tmp_path / "local", executor="local")}

    runs = tmp_path / "runs"
    said: list[str] = []
    outcomes = run_eval(
        load_manifest(path), runs_dir=runs, executor="hf-jobs", endpoint=hub.url, token=token, say=said.append,
        scaleout={"hf_jobs_launcher": "command", "hf_jobs_python": sys.executable, "poll_interval": 0.3, "resources": {"time_min": 20}},
    )  # fmt: skip
    got = {o.subject: o.record for o in outcomes}
    assert set(got) == set(local) == {"base", "lora-half"}
    for subject, rec in got.items():
        assert rec.strategy == local[subject].strategy
        assert per_sample(rec) == per_sample(local[subject]), subject
        assert numbers(rec) == numbers(local[subject]), subject
        assert rec.hardware["executor"]["kind"] == "hf-jobs"
        assert (runs / rec.run_id / "record.json").is_file()  # adopted into this store

    posts = [r for r in hub.job_requests if r["method"] == "POST"]
    assert [r["path"] for r in posts] == ["/api/jobs/local-user"]  # one unit: the setup's two subjects
    body = posts[0]["body"]
    assert body["secrets"] == {"HF_TOKEN": token}
    assert posts[0]["authorization"] == f"Bearer {token}"
    assert body["command"][:3] == [sys.executable, "-m", "hubkit.scaleout.hf_worker"]
    assert body["command"][3:5] == ["--repo", "local-user/eval-exchange"] and body["command"][5] == "--prefix"
    prefix = body["command"][6]
    assert prefix.startswith("units/demo__base+lora-half__") and body["arguments"] == []
    assert body["environment"]["HF_ENDPOINT"] == hub.url and body["environment"]["HF_HUB_OFFLINE"] == "0"
    assert body["environment"]["HUBKIT_UNIT_ID"] == prefix.split("/")[1]
    assert body["flavor"] == "cpu-upgrade" and body["timeoutSeconds"] == 20 * 60
    assert body["dockerImage"] == "python:3.12" and body["labels"]["hubkit-unit"] == prefix.split("/")[1].replace("+", "-")
    assert body["labels"]["name"].startswith("hubkit-demo__base-lora-half__")  # the job's name, as run_job sends it
    inspected = [r for r in hub.job_requests if r["method"] == "GET"]
    assert inspected and all(r["path"].startswith("/api/jobs/local-user/") for r in inspected)
    # the exchange repo carries the unit and its result; the token is nowhere but in the secret
    with hub_session(hub.url):
        files = api.list_repo_files("local-user/eval-exchange", repo_type="dataset")
    assert f"{prefix}/unit.pkl" in files and f"{prefix}/result.pkl" in files and f"{prefix}/inputs/hubkit.yaml" in files
    assert token not in json.dumps({k: v for k, v in body.items() if k != "secrets"})
    for text_file in [*runs.rglob("*"), *(hub.store.root / "jobs").rglob("*")]:
        if text_file.is_file():
            assert token.encode() not in text_file.read_bytes(), text_file
    assert not any(token in line for line in said)


def test_hf_jobs_uv_launcher_request(jobs_hub, tmp_path):
    """The default launcher: `run_uv_job` with hubkit as a uv dependency, in uv's image."""
    from hubkit import __version__
    from hubkit.hub.server import LocalHub
    from hubkit.scaleout import Unit, unit_id
    from hubkit.scaleout.hfjobs import HfJobsExecutor

    _, token = jobs_hub
    with LocalHub(tmp_path / "quiet-hub", token=token, record=True) as hub:  # stores jobs, runs none
        executor = HfJobsExecutor(tmp_path / "jobs", endpoint=hub.url, token=token, flavor="a10g-small", poll_interval=0.1)
        executor.submit([Unit(unit_id("demo", "base"), len, ("abc",))])
        (post,) = [r for r in hub.job_requests if r["method"] == "POST"]
        statuses = executor.wait(timeout=30)
    body = post["body"]
    assert body["command"][:4] == ["uv", "run", "--with", f"hubkit-ml[eval]=={__version__}"]
    assert body["command"][4:7] == ["python", "-m", "hubkit.scaleout.hf_worker"]
    assert body["dockerImage"].startswith("ghcr.io/astral-sh/uv") and body["flavor"] == "a10g-small"
    assert body["secrets"] == {"HF_TOKEN": token} and token not in json.dumps(body["command"] + [body["environment"]])
    assert body["timeoutSeconds"] == 60 * 60  # the unit's time limit
    (status,) = statuses.values()
    assert status.state == "failed" and "does not run them" in status.error  # the hub said so; we kept it


def test_local_hub_jobs_api_runs_lists_cancels_and_redacts(jobs_hub):
    """The Jobs API routes the executor relies on, through the genuine client: a job runs with its
    secret in its environment, its log never shows the secret, cancel stops it, a bad flavor is
    refused with the Hub's 400, an unknown job is a 404."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from hubkit.hub.client import hub_session

    hub, token = jobs_hub
    NS = "local-user"  # the token's user on the local hub (the client would ask whoami otherwise)
    api = HfApi(endpoint=hub.url, token=token)
    script = "import os, sys, time; print('token', os.environ['HF_TOKEN'], os.environ['STAGE']); sys.stdout.flush(); time.sleep(60)"
    with hub_session(hub.url):
        job = api.run_job(image="python:3.12", command=[sys.executable, "-c", script], env={"STAGE": "one"}, secrets={"HF_TOKEN": token}, flavor="cpu-basic", timeout="5m", namespace=NS)
        deadline = time.time() + 60
        while time.time() < deadline and not any("token" in line for line in api.fetch_job_logs(job_id=job.id, namespace=NS)):
            time.sleep(0.2)
        lines = list(api.fetch_job_logs(job_id=job.id, namespace=NS))
        assert any(line.startswith("token ") and line.endswith(" one") for line in lines), lines
        assert not any(token in line for line in lines)
        info = api.inspect_job(job_id=job.id, namespace=NS)
        assert str(info.status.stage.value if hasattr(info.status.stage, "value") else info.status.stage) == "RUNNING"
        assert info.secrets == {"HF_TOKEN": None} and info.environment == {"STAGE": "one"} and info.flavor == "cpu-basic"
        assert [j.id for j in api.list_jobs(namespace=NS)] == [job.id]
        api.cancel_job(job_id=job.id, namespace=NS)
        stage = api.inspect_job(job_id=job.id, namespace=NS).status.stage
        assert str(getattr(stage, "value", stage)) == "CANCELED"
        with pytest.raises(HfHubHTTPError) as bad:
            api.run_job(image="python:3.12", command=["true"], flavor="no-such-gpu", namespace=NS)
        assert bad.value.response.status_code == 400 and "flavor" in str(bad.value)
        with pytest.raises(HfHubHTTPError) as missing:
            api.inspect_job(job_id="0" * 24, namespace=NS)
        assert missing.value.response.status_code == 404
    stored = json.loads(next((hub.store.root / "jobs" / "local-user").glob("*/job.json")).read_text())
    assert stored["secretNames"] == ["HF_TOKEN"] and token not in json.dumps(stored)
