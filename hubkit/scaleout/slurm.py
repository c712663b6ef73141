"""Run units as Slurm jobs through submitit: one job array per group of units with equal resources.

State comes from `squeue` (which lists finished jobs for the cluster's MinJobAge, 300 s by
default) and from the result file submitit's job wrapper writes, not from submitit's own
watcher: that one calls `sacct`, which fails on clusters without an accounting database, and
then reports every job as UNKNOWN and never sees a cancelled job end. A unit's result file
settles it whatever Slurm says; a job Slurm no longer knows that left no result is failed.
"""

from __future__ import annotations

import math
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hubkit.scaleout.units import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    Handle,
    Resources,
    ScaleoutError,
    Unit,
    UnitStatus,
    call_unit,
    outcome_value,
    poll_until_ended,
    read_outcome,
    settle_from_outcome,
    tail,
)

# Slurm job states (squeue %T) by what they mean for a unit.
_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "POWER_UP_NODE"}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED", "RESIZING"}
_CANCELLED = {"CANCELLED"}
# Anything else Slurm reports (FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL,
# DEADLINE, COMPLETED without a result...) ends the unit as failed.

# How long a job may be missing from squeue right after sbatch, and how long a COMPLETED job
# may lack its result file (shared filesystems publish files late), before we give up on it.
_GRACE_S = 60.0


def _load_submitit():
    try:
        import submitit
    except ImportError as e:
        raise ScaleoutError(
            "the slurm executor needs submitit", hint="pip install 'hubkit[scaleout]'"
        ) from e
    return submitit


def _parse_time(text: str) -> float | None:
    # squeue prints local time without a zone, or N/A / Unknown / None.
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class SlurmExecutor:
    """Submits units to Slurm as job arrays through submitit.

    `folder` (on a filesystem the compute nodes share) keeps submitit's files per job:
    `<folder>/<jobid>_<task>/` holds the pickled unit, its result and its stdout/stderr logs.
    `partition`, `account` and `qos` go to sbatch as given; each unit's Resources become
    --cpus-per-task, --gpus-per-node, --mem and --time. `python` is the interpreter the jobs run
    (default: this one, so a pinned environment on the shared filesystem is used as is); `setup`
    lines run before it (module loads, exports); `sbatch` adds any other sbatch option
    ({"constraint": "a100"}). `max_parallel` caps the running tasks of each array.
    """

    name = "slurm"

    def __init__(
        self,
        folder: str | Path,
        *,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        python: str | None = None,
        setup: Sequence[str] = (),
        sbatch: dict[str, Any] | None = None,
        max_parallel: int | None = None,
        job_name: str = "hubkit",
        poll_interval: float = 10.0,
    ):
        self._submitit = _load_submitit()
        for tool in ("sbatch", "squeue", "scancel"):
            if shutil.which(tool) is None:
                raise ScaleoutError(
                    f"`{tool}` is not on PATH: this machine is not a Slurm submit host",
                    hint="Run from a login node of the cluster, or use --executor local.",
                )
        self.folder = Path(folder).absolute()
        self.partition = partition
        self.account = account
        self.qos = qos
        self.python = python
        self.setup = list(setup)
        self.sbatch = dict(sbatch or {})
        self.max_parallel = max_parallel
        self.job_name = job_name
        self.poll_interval = poll_interval
        self._status: dict[str, UnitStatus] = {}
        self._squeue_error: str | None = None

    # -- Executor interface -------------------------------------------------------------------

    def submit(self, units: Iterable[Unit]) -> list[Handle]:
        """Submits `units` as one job array per distinct Resources. Returns a handle per unit
        (job id `<array>_<index>`); raises ScaleoutError when sbatch refuses (units of arrays
        submitted before that stay tracked)."""
        units = list(units)
        ids = [u.id for u in units]
        if len(set(ids)) != len(ids):
            raise ScaleoutError(f"unit ids repeat in one submission: {sorted({i for i in ids if ids.count(i) > 1})}")
        for unit in units:
            current = self._status.get(unit.id)
            if current is not None and not current.terminal:
                raise ScaleoutError(f"unit {unit.id} is already {current.state} as Slurm job {current.job_id}")
        groups: dict[Resources, list[Unit]] = {}
        for unit in units:
            groups.setdefault(unit.resources, []).append(unit)
        handles: dict[str, Handle] = {}
        for resources, group in groups.items():
            executor = self._executor(resources, len(group))
            try:
                jobs = executor.map_array(
                    call_unit, [u.fn for u in group], [tuple(u.args) for u in group], [dict(u.kwargs) for u in group]
                )
            except Exception as e:  # submitit raises its own and subprocess errors; sbatch says why
                detail = getattr(e, "output", None) or getattr(e, "stderr", None) or e
                if isinstance(detail, bytes):
                    detail = detail.decode(errors="replace")
                raise ScaleoutError(
                    f"sbatch refused {len(group)} unit(s) ({', '.join(u.id for u in group[:3])}"
                    f"{'...' if len(group) > 3 else ''}): {str(detail).strip()}",
                    hint="Check the partition, account and resources against the cluster (`sinfo -s` lists partitions).",
                ) from e
            now = time.time()
            for unit, job in zip(group, jobs):
                logs = {"stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
                self._status[unit.id] = UnitStatus(
                    unit_id=unit.id,
                    state=QUEUED,
                    executor=self.name,
                    job_id=str(job.job_id),
                    submitted_at=now,
                    logs=logs,
                    result=str(job.paths.result_pickle),
                )
                handles[unit.id] = Handle(unit.id, str(job.job_id), dict(logs), str(job.paths.result_pickle))
        return [handles[i] for i in ids]

    def poll(self) -> dict[str, UnitStatus]:
        """Refreshes every unfinished unit (one squeue call) and returns all statuses (copies).
        When squeue fails, states stay as they were and `squeue_error` says why."""
        live = [s for s in self._status.values() if not s.terminal]
        pending = []
        for status in live:
            if not self._settle_from_result(status):
                pending.append(status)
        if pending:
            jobs = self._squeue([s.job_id for s in pending if s.job_id])
            if jobs is not None:
                for status in pending:
                    self._apply(status, jobs.get(status.job_id or ""))
        return {uid: UnitStatus(**s.to_json()) for uid, s in self._status.items()}

    def cancel(self, unit_id: str) -> None:
        """Asks Slurm to cancel the unit's job (scancel); polls report it cancelled once Slurm
        has stopped it (a running job shows as running for KillWait seconds meanwhile).
        Raises ScaleoutError for an unknown unit or when scancel fails."""
        status = self._status.get(unit_id)
        if status is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        if status.terminal or not status.job_id:
            return
        proc = subprocess.run(["scancel", status.job_id], capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise ScaleoutError(f"scancel {status.job_id} failed: {proc.stderr.strip() or proc.returncode}")

    def wait(self, timeout: float | None = None) -> dict[str, UnitStatus]:
        """Polls every `poll_interval` seconds until all tracked units ended (or `timeout`
        passed); returns the statuses."""
        return poll_until_ended(self, timeout)

    def attach(self, status: UnitStatus) -> bool:
        """Resumes tracking a unit submitted by an earlier process. Returns True when its result
        is there or its job is still queued or running, False when it must be submitted again
        (the job ended without a result, or Slurm no longer knows it)."""
        status = UnitStatus(**status.to_json())
        status.executor = self.name
        if self._settle_from_result(status):
            self._status[status.unit_id] = status
            return True
        if not status.job_id:
            return False
        jobs = self._squeue([status.job_id])
        if jobs is None:
            raise ScaleoutError(f"cannot ask Slurm about job {status.job_id}: {self._squeue_error}")
        job = jobs.get(status.job_id)
        if job is None or (job["state"] not in _QUEUED and job["state"] not in _RUNNING):
            return False
        self._apply(status, job)
        self._status[status.unit_id] = status
        return True

    def result(self, unit_id: str) -> Any:
        """Returns a done unit's return value; raises UnitFailed otherwise."""
        status = self._status.get(unit_id)
        if status is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        return outcome_value(status)

    @property
    def squeue_error(self) -> str | None:
        """Why the last squeue call failed, or None when it worked."""
        return self._squeue_error

    # -- internals ------------------------------------------------------------------------------

    def _executor(self, resources: Resources, size: int):
        executor = self._submitit.SlurmExecutor(folder=self.folder / "%j", python=self.python)
        params: dict[str, Any] = {
            "job_name": self.job_name,
            "time": resources.time_min,
            "cpus_per_task": resources.cpus,
            "array_parallelism": self.max_parallel or size,
            # submitit asks Slurm for SIGUSR2 this long before the time limit (90 s by default):
            # with a limit of a minute or two that would come at once, and be taken for preemption.
            "signal_delay_s": min(90, resources.time_min * 15),
        }
        if self.partition:
            params["partition"] = self.partition
        if resources.gpus:
            params["gpus_per_node"] = resources.gpus
        if resources.mem_gb is not None:
            params["mem"] = f"{math.ceil(resources.mem_gb * 1024)}M"
        if self.setup:
            params["setup"] = list(self.setup)
        extra = dict(self.sbatch)
        if self.account:
            extra["account"] = self.account
        if self.qos:
            extra["qos"] = self.qos
        if extra:
            params["additional_parameters"] = extra
        executor.update_parameters(**params)
        return executor

    def _settle_from_result(self, status: UnitStatus) -> bool:
        try:
            outcome = read_outcome(status.result) if status.result else None
        except ScaleoutError as e:
            outcome = ("error", str(e))
        if outcome is None:
            return False
        settle_from_outcome(status, outcome, ended=Path(status.result).stat().st_mtime)
        return True

    def _squeue(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]] | None:
        """Returns {job_id: {state, started, ended, reason}} for the jobs Slurm still knows,
        or None when squeue failed."""
        if not job_ids:
            return {}
        arrays = sorted({j.split("_")[0] for j in job_ids})
        cmd = [
            "squeue", "--noheader", "--array", "--states=all", f"--user={pwd.getpwuid(os.getuid()).pw_name}",
            f"--jobs={','.join(arrays)}", "--format=%i|%T|%S|%e|%r",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            self._squeue_error = f"{type(e).__name__}: {e}"
            return None
        if proc.returncode != 0:
            # Asked about one job it has forgotten, squeue fails instead of listing nothing.
            if "Invalid job id" in proc.stderr:
                self._squeue_error = None
                return {}
            self._squeue_error = proc.stderr.strip() or f"squeue exited {proc.returncode}"
            return None
        self._squeue_error = None
        jobs = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) != 5:
                continue
            job_id, state, started, ended, reason = parts
            jobs[job_id] = {
                "state": state.split()[0].rstrip("+"),
                "started": _parse_time(started),
                "ended": _parse_time(ended),
                "reason": reason,
            }
        return jobs

    def _apply(self, status: UnitStatus, job: dict[str, Any] | None) -> None:
        now = time.time()
        if job is None:
            if now - (status.submitted_at or now) > _GRACE_S:
                status.ended_at = now
                never_started = status.state == QUEUED and status.started_at is None and not any(
                    Path(p).exists() for p in status.logs.values()
                )
                if never_started:
                    # A pending array task that is cancelled leaves squeue at once, with no
                    # CANCELLED line: it vanished before it ran, which only scancel (or an
                    # administrator) does.
                    status.state = CANCELLED
                    status.error = f"Slurm job {status.job_id} left the queue before it started (cancelled)"
                else:
                    status.state = FAILED
                    status.error = (
                        f"Slurm job {status.job_id} is no longer known to Slurm and left no result\n"
                        f"{tail(status.logs.get('stderr'))}"
                    ).strip()
            return
        state = job["state"]
        if state in _QUEUED:
            status.state = QUEUED
        elif state in _RUNNING:
            status.state = RUNNING
            status.started_at = job["started"] or status.started_at or now
        elif state in _CANCELLED:
            status.state = CANCELLED
            status.started_at = job["started"] if status.started_at is None else status.started_at
            status.ended_at = job["ended"] or now
            status.error = f"Slurm job {status.job_id} was cancelled"
        elif state == "COMPLETED" and now - (job["ended"] or now) < _GRACE_S:
            status.state = RUNNING  # the result file is on its way
            status.started_at = job["started"] or status.started_at
        else:
            status.state = FAILED
            status.started_at = job["started"] or status.started_at
            status.ended_at = job["ended"] or now
            reason = "" if job["reason"] in ("None", "") else f" ({job['reason']})"
            status.error = (
                f"Slurm job {status.job_id} ended {state}{reason} without a result\n"
                f"{tail(status.logs.get('stderr'))}"
            ).strip()

