"""Scale-out executors: a GPU pool and subprocesses on this machine, and a real one-node Slurm
cluster (Debian's slurmctld/slurmd/munge, started by tests/slurm_fixture.py) driven through
submitit. The Slurm tests fail, never skip, when the cluster cannot start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import cloudpickle
import pytest
from slurm_fixture import SCRIPT, slurm_cluster  # noqa: F401 - the fixture is used by name

from hubkit.scaleout import (
    CANCELLED,
    DONE,
    FAILED,
    RUNNING,
    Executor,
    GpuPool,
    LocalExecutor,
    Matrix,
    Resources,
    ScaleoutError,
    SlurmExecutor,
    Unit,
    UnitFailed,
    UnitStatus,
    render_view,
    unit_id,
    visible_gpus,
)

# The units below live in this test module, which a job's Python cannot import by name:
# ship them by value, as a user's script in __main__ would be.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = Resources(cpus=1, mem_gb=0.25, time_min=5)


# -- units ----------------------------------------------------------------------------------------


def shard_value(index: int, out_dir: str) -> dict:
    """A stand-in for one evaluation shard: computes a value and writes it where results go."""
    value = {"shard": index, "score": round(sum(k * k for k in range(index * 1000)) / 7, 3)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f"shard-{index}.json").write_text(json.dumps(value, sort_keys=True))
    return value


def broken_shard(message: str) -> None:
    raise ValueError(message)


def sleep_the_first_time(marker: str, seconds: float) -> str:
    """Sleeps (long enough to be cancelled) on its first run only; a rerun returns at once."""
    if Path(marker).exists():
        return "finished on rerun"
    # written aside and renamed: a reader never sees the file before the pid is in it
    Path(marker + ".tmp").write_text(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    time.sleep(seconds)
    return "finished the first time"


def report_devices(seconds: float) -> dict:
    started = time.time()
    time.sleep(seconds)
    return {"devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "started": started, "ended": time.time()}


def fail_until(flag: str) -> str:
    if not Path(flag).exists():
        raise RuntimeError("the data is not there yet")
    return "ok"


def shard_units(out_dir: Path) -> list[Unit]:
    return [Unit(f"setup-a__shard-{i}", shard_value, (i, str(out_dir)), resources=TINY) for i in range(4)]


def _overlap(a: dict, b: dict) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


# -- units, GPU pool, local executor ----------------------------------------------------------------


def test_unit_ids_are_checked_and_built_from_parts():
    with pytest.raises(ScaleoutError, match="invalid unit id"):
        Unit("shard 1/../x", shard_value)
    built = unit_id("llama-7b lora", "adapter-a+adapter-b", "arc_easy/3")
    assert Unit(built, shard_value).id == built
    assert "/" not in built and " " not in built
    with pytest.raises(ScaleoutError, match="invalid resources"):
        Resources(cpus=0)


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": " 3 , 1 "}) == ["3", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8a1c,GPU-77fe"}) == ["GPU-8a1c", "GPU-77fe"]


def test_gpu_pool_lends_each_device_to_one_holder():
    pool = GpuPool(["0", "1", "2", "3"])
    first = pool.acquire(2)
    second = pool.acquire(1)
    assert first == ["0", "1"] and second == ["2"]
    assert pool.acquire(2) is None  # only "3" is free: the unit waits
    assert pool.acquire(0) == []
    pool.release(first)
    assert pool.free == ["0", "1", "3"]
    assert pool.acquire(3) == ["0", "1", "3"]
    with pytest.raises(ScaleoutError, match="only 4 are visible"):
        pool.acquire(5)
    with pytest.raises(ScaleoutError, match="not lent out"):
        pool.release(["7"])
    pool.release(second)
    with pytest.raises(ScaleoutError, match="not lent out"):
        pool.release(second)


def test_local_units_get_their_own_gpus_and_cpu_units_none(tmp_path):
    executor = LocalExecutor(tmp_path / "runs", gpus=["4", "6", "7"], cpus=8)
    units = [Unit(f"one-gpu-{i}", report_devices, (0.6,), resources=Resources(gpus=1)) for i in range(4)]
    units += [Unit("two-gpus", report_devices, (0.6,), resources=Resources(gpus=2))]
    units += [Unit("cpu-only", report_devices, (0.1,))]
    executor.submit(units)
    statuses = executor.wait(timeout=60)
    assert {u: s.state for u, s in statuses.items()} == {u.id: DONE for u in units}
    seen = {u.id: executor.result(u.id) for u in units}
    assert seen["cpu-only"]["devices"] == ""  # hidden, so it cannot take a lent device
    gpu_units = {u: r for u, r in seen.items() if u != "cpu-only"}
    for u, r in gpu_units.items():
        devices = r["devices"].split(",")
        assert len(devices) == (2 if u == "two-gpus" else 1)
        assert set(devices) <= {"4", "6", "7"}
    # 6 GPUs' worth of units on 3 GPUs: some had to wait, and no two running at once shared one.
    overlapping = [(a, b) for a, b in combinations(gpu_units, 2) if _overlap(gpu_units[a], gpu_units[b])]
    assert len(overlapping) < len(list(combinations(gpu_units, 2)))
    for a, b in overlapping:
        assert not set(gpu_units[a]["devices"].split(",")) & set(gpu_units[b]["devices"].split(","))
    assert executor.pool.free == ["4", "6", "7"]
    with pytest.raises(ScaleoutError, match="needs 4 GPU"):
        executor.submit([Unit("too-big", report_devices, (0,), resources=Resources(gpus=4))])


def test_local_concurrency_limit(tmp_path):
    executor = LocalExecutor(tmp_path / "runs", gpus=[], cpus=8, max_parallel=1)
    units = [Unit(f"u{i}", report_devices, (0.3,)) for i in range(3)]
    executor.submit(units)
    assert sum(s.state == RUNNING for s in executor.poll().values()) == 1
    executor.wait(timeout=60)
    runs = [executor.result(u.id) for u in units]
    assert not any(_overlap(a, b) for a, b in combinations(runs, 2))


def test_local_failure_keeps_the_error_and_cancel_stops_the_process(tmp_path):
    with LocalExecutor(tmp_path / "runs", gpus=[], cpus=4) as executor:
        marker = tmp_path / "started"
        executor.submit(
            [
                Unit("broken", broken_shard, ("shard 3 has no rows",)),
                Unit("sleeper", sleep_the_first_time, (str(marker), 60)),
            ]
        )
        deadline = time.time() + 30
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        pid = int(marker.read_text())
        executor.cancel("sleeper")
        statuses = executor.wait(timeout=30)
    assert statuses["sleeper"].state == CANCELLED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    broken = statuses["broken"]
    assert broken.state == FAILED
    assert "ValueError: shard 3 has no rows" in broken.error
    assert "broken_shard" in broken.error  # the traceback, not only the message
    with pytest.raises(UnitFailed, match="shard 3 has no rows"):
        executor.result("broken")


def test_local_unit_past_its_time_limit_is_stopped(tmp_path):
    marker = tmp_path / "started"
    with LocalExecutor(tmp_path / "runs", gpus=[]) as executor:
        assert isinstance(executor, Executor)
        executor.submit([Unit("stuck", sleep_the_first_time, (str(marker), 60), resources=Resources(time_min=1))])
        deadline = time.time() + 30
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert executor.poll()["stuck"].state == RUNNING
        executor._entries["stuck"].status.started_at -= 61  # a minute later, as far as the limit knows
        status = executor.poll()["stuck"]
    assert status.state == FAILED and "time limit of 1 min" in status.error
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)


def test_local_rerun_runs_only_what_failed(tmp_path):
    flag = tmp_path / "data-ready"
    units = shard_units(tmp_path / "out") + [Unit("needs-data", fail_until, (str(flag),))]
    matrix = Matrix(tmp_path / "matrix.json")
    first = matrix.run(units, LocalExecutor(tmp_path / "runs", gpus=[], cpus=2), poll_interval=0.05)
    assert first.unfinished == ["needs-data"]
    assert "RuntimeError: the data is not there yet" in first.statuses["needs-data"].error
    assert matrix.missing(units) == [units[-1]]
    flag.touch()
    second = matrix.run(units, LocalExecutor(tmp_path / "runs", gpus=[], cpus=2), poll_interval=0.05)
    assert second.submitted == ["needs-data"]
    assert sorted(second.skipped) == sorted(u.id for u in units[:-1])
    assert second.ok
    assert matrix.result("needs-data") == "ok"
    assert matrix.result("setup-a__shard-2") == json.loads((tmp_path / "out" / "shard-2.json").read_text())
    stored = json.loads(matrix.path.read_text())
    assert stored["format"] == "hubkit.scaleout.matrix/1"
    assert {u: s["state"] for u, s in stored["units"].items()} == {u.id: DONE for u in units}


def test_one_run_at_a_time_per_matrix(tmp_path):
    matrix = Matrix(tmp_path / "matrix.json")
    units = [Unit("a", report_devices, (0.2,))]
    clashes = []

    def second_run(_statuses):
        if not clashes:
            with pytest.raises(ScaleoutError, match="another run is using") as err:
                Matrix(matrix.path).run(units, LocalExecutor(tmp_path / "other", gpus=[]))
            clashes.append(err.value)

    assert matrix.run(units, LocalExecutor(tmp_path / "runs", gpus=[]), on_update=second_run).ok
    assert clashes


def test_live_view_text():
    now = 1_000_000.0

    def status(uid, state, **kw):
        return UnitStatus(unit_id=uid, state=state, executor="slurm", **kw)

    view = render_view(
        {
            "setup-a__shard-0": status("setup-a__shard-0", "done", job_id="41_0", started_at=now - 200, ended_at=now - 77.5),
            "setup-a__shard-1": status("setup-a__shard-1", "running", job_id="41_1", started_at=now - 3725),
            "setup-a__shard-2": status("setup-a__shard-2", "queued", job_id="41_2", submitted_at=now - 4.25),
            "setup-a__shard-3": status(
                "setup-a__shard-3", "failed", job_id="41_3", started_at=now - 50, ended_at=now - 49,
                error="Traceback (most recent call last):\n  ...\nValueError: shard 3 has no rows\n",
            ),
            "setup-b__shard-0": None,
        },
        now=now,
    )  # fmt: skip
    assert view == (
        "5 units: 1 queued, 1 running, 1 done, 1 failed, 0 cancelled, 1 not submitted\n"
        "  unit              state    job   time\n"
        "  setup-a__shard-1  running  41_1  running 1h02m\n"
        "  setup-a__shard-2  queued   41_2  waiting 4.2s\n"
        "  setup-a__shard-3  failed   41_3  1.0s           ValueError: shard 3 has no rows\n"
        "  setup-a__shard-0  done     41_0  2m02s\n"
        "  setup-b__shard-0  -        -     -"
    )


# -- the real one-node Slurm cluster ----------------------------------------------------------------


def _slurm(cluster, folder: Path) -> SlurmExecutor:
    return SlurmExecutor(folder, partition=cluster.partition, poll_interval=0.3)


def test_cluster_script_start_is_idempotent(slurm_cluster):
    again = subprocess.run(
        ["bash", str(SCRIPT), "start"],
        env={**os.environ, "HUBKIT_SLURM_DIR": str(slurm_cluster.state_dir)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, check=True)
    assert sinfo.stdout.split()[0].rstrip("*") == slurm_cluster.partition


def test_slurm_job_array_gives_the_local_results(slurm_cluster, tmp_path):
    local = Matrix(tmp_path / "local.json")
    local_executor = LocalExecutor(tmp_path / "local", gpus=[])
    assert local.run(shard_units(tmp_path / "out-local"), local_executor, poll_interval=0.05).ok

    matrix = Matrix(tmp_path / "slurm.json")
    executor = _slurm(slurm_cluster, tmp_path / "slurm")
    assert isinstance(executor, Executor)
    run = matrix.run(shard_units(tmp_path / "out-slurm"), executor)
    assert run.ok, render_view(run.statuses)
    assert run.submitted == [u.id for u in shard_units(tmp_path)]
    job_ids = [s.job_id for s in run.statuses.values()]
    assert len({j.split("_")[0] for j in job_ids}) == 1 and all("_" in j for j in job_ids)  # one array

    for unit in shard_units(tmp_path):
        assert executor.result(unit.id) == local.result(unit.id) == matrix.result(unit.id)
        name = f"shard-{unit.args[0]}.json"
        assert (tmp_path / "out-slurm" / name).read_text() == (tmp_path / "out-local" / name).read_text()
        status = run.statuses[unit.id]
        assert status.started_at <= status.ended_at
        # Each unit keeps its own logs, named in the matrix record.
        assert Path(status.logs["stderr"]).is_file() and Path(status.logs["stdout"]).is_file()
        assert f"job_id={status.job_id}," in Path(status.logs["stdout"]).read_text()

    rerun_executor = _slurm(slurm_cluster, tmp_path / "slurm")
    again = Matrix(tmp_path / "slurm.json").run(shard_units(tmp_path / "out-slurm"), rerun_executor)
    assert again.submitted == [] and len(again.skipped) == 4 and again.ok


def test_slurm_unit_that_raises_is_failed_with_its_error(slurm_cluster, tmp_path):
    units = [Unit("good", shard_value, (1, str(tmp_path / "out")), resources=TINY)]
    units += [Unit("bad", broken_shard, ("shard 3 has no rows",), resources=TINY)]
    executor = _slurm(slurm_cluster, tmp_path / "slurm")
    run = Matrix(tmp_path / "matrix.json").run(units, executor, timeout=120)
    assert run.statuses["good"].state == DONE
    bad = run.statuses["bad"]
    assert bad.state == FAILED, render_view(run.statuses)
    assert "ValueError: shard 3 has no rows" in bad.error and "broken_shard" in bad.error
    assert "ValueError: shard 3 has no rows" in render_view(run.statuses)
    with pytest.raises(UnitFailed, match="shard 3 has no rows"):
        executor.result("bad")


def test_scancelled_unit_is_rerun_alone(slurm_cluster, tmp_path):
    marker = tmp_path / "sleeper-started"
    units = shard_units(tmp_path / "out")[:2]
    units.append(Unit("sleeper", sleep_the_first_time, (str(marker), 300), resources=TINY))
    cancelled = []

    def scancel_the_sleeper(statuses):
        sleeper = statuses["sleeper"]
        if sleeper.state == RUNNING and not cancelled:
            deadline = time.time() + 60
            while not marker.exists() and time.time() < deadline:  # its function is running
                time.sleep(0.1)
            subprocess.run(["scancel", sleeper.job_id], check=True, timeout=60)
            cancelled.append(sleeper.job_id)

    matrix = Matrix(tmp_path / "matrix.json")
    first = matrix.run(units, _slurm(slurm_cluster, tmp_path / "slurm"), on_update=scancel_the_sleeper, timeout=180)
    assert cancelled, "the sleeper never ran"
    assert first.statuses["sleeper"].state == CANCELLED, render_view(first.statuses)
    assert matrix.load()["sleeper"].state == CANCELLED
    assert [u for u, s in first.statuses.items() if s.state == DONE] == [u.id for u in units[:2]]

    second = matrix.run(units, _slurm(slurm_cluster, tmp_path / "slurm"), timeout=120)
    assert second.submitted == ["sleeper"]
    assert sorted(second.skipped) == sorted(u.id for u in units[:2])
    assert second.ok, render_view(second.statuses)
    assert second.statuses["sleeper"].job_id != cancelled[0]
    assert matrix.result("sleeper") == "finished on rerun"


def test_rerun_after_the_watcher_dies_follows_the_running_job(slurm_cluster, tmp_path):
    units = [Unit("slow", report_devices, (3,), resources=TINY)]

    class WatcherKilled(Exception):
        pass

    def die_once_running(statuses):
        if statuses["slow"].state == RUNNING:
            raise WatcherKilled

    matrix = Matrix(tmp_path / "matrix.json")
    with pytest.raises(WatcherKilled):
        matrix.run(units, _slurm(slurm_cluster, tmp_path / "slurm"), on_update=die_once_running)
    recorded = matrix.load()["slow"]
    assert recorded.state == RUNNING

    second = matrix.run(units, _slurm(slurm_cluster, tmp_path / "slurm"), timeout=120)
    assert second.reattached == ["slow"] and second.submitted == []
    assert second.ok and second.statuses["slow"].job_id == recorded.job_id
