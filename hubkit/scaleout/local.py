"""Run units on this machine: one subprocess per unit, within a CPU budget and a GPU pool.

Each unit gets its own GPUs (CUDA_VISIBLE_DEVICES) from the pool of visible devices, so two
units never share one; units that need none see no GPU. A unit waits while the CPUs or GPUs it
needs are taken, and later units that fit start in its place (so one big unit does not hold up
small ones).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubkit.scaleout.units import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    Handle,
    ScaleoutError,
    Unit,
    UnitStatus,
    call_unit,
    dump_pickle,
    outcome_value,
    poll_until_ended,
    read_outcome,
    settle_from_outcome,
    tail,
)


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """Returns the GPU ids this process may hand out: CUDA_VISIBLE_DEVICES when set (empty or
    '-1' means none), otherwise the indices `nvidia-smi -L` lists, otherwise none."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        value = value.strip()
        if value in ("", "-1"):
            return []
        return [part.strip() for part in value.split(",") if part.strip()]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


class GpuPool:
    """Hands out whole GPUs by id; a device is lent to one holder at a time."""

    def __init__(self, devices: Sequence[str]):
        if len(set(devices)) != len(devices):
            raise ScaleoutError(f"GPU list {list(devices)} names a device twice")
        self.devices = list(devices)
        self._free = list(devices)

    @property
    def size(self) -> int:
        """The number of GPUs in the pool."""
        return len(self.devices)

    @property
    def free(self) -> list[str]:
        """The ids not lent out, in pool order."""
        return list(self._free)

    def acquire(self, n: int) -> list[str] | None:
        """Returns `n` free device ids (lowest first) now lent out, [] for n == 0, or None when
        fewer than `n` are free. Raises ScaleoutError when the pool could never hold `n`."""
        if n > self.size:
            raise ScaleoutError(
                f"a unit needs {n} GPU(s) but only {self.size} are visible ({self.devices or 'none'})",
                hint="Lower the unit's gpus, or set CUDA_VISIBLE_DEVICES / run on a machine with more GPUs.",
            )
        if n > len(self._free):
            return None
        taken, self._free = self._free[:n], self._free[n:]
        return taken

    def release(self, devices: Iterable[str]) -> None:
        """Returns lent devices to the pool (in pool order)."""
        back = set(devices)
        unknown = back - set(self.devices)
        if unknown or back & set(self._free):
            raise ScaleoutError(f"GPU(s) {sorted(back)} were not lent out by this pool")
        self._free = [d for d in self.devices if d in back or d in self._free]


@dataclass
class _Entry:
    unit: Unit | None  # None for a unit taken over, already ended, from an earlier process
    status: UnitStatus
    folder: Path
    cpus: int
    gpus: list[str] | None = None
    proc: subprocess.Popen | None = None


class LocalExecutor:
    """Runs each unit in its own Python subprocess on this machine.

    `folder` keeps one folder per unit attempt (`<unit>/<attempt>/`: the pickled unit, its
    result, stdout.log and stderr.log). At most `max_parallel` units run at once (default: no
    limit beyond CPUs and GPUs); their `cpus` add up to at most `cpus` (default: this machine's
    count; a unit asking more than that runs alone); `gpus` is the device list to lend out
    (default: `visible_gpus()`). A unit running past its `time_min` is stopped and failed, as
    Slurm would; `mem_gb` is not enforced here.
    """

    name = "local"
    poll_interval = 0.2

    def __init__(
        self,
        folder: str | Path,
        *,
        max_parallel: int | None = None,
        cpus: int | None = None,
        gpus: Sequence[str] | None = None,
        python: str | None = None,
    ):
        self.folder = Path(folder).absolute()
        self.max_parallel = max_parallel
        self.cpus = cpus or os.cpu_count() or 1
        self.pool = GpuPool(visible_gpus() if gpus is None else list(gpus))
        self.python = python or sys.executable
        self._entries: dict[str, _Entry] = {}
        self._waiting: list[str] = []
        self._running: list[str] = []

    # -- Executor interface -------------------------------------------------------------------

    def submit(self, units: Iterable[Unit]) -> list[Handle]:
        """Queues `units` and starts those that fit now. Returns one handle per unit; raises
        ScaleoutError for a unit already in flight or needing more GPUs than are visible."""
        units = list(units)
        ids = [u.id for u in units]
        if len(set(ids)) != len(ids):
            raise ScaleoutError(f"unit ids repeat in one submission: {sorted({i for i in ids if ids.count(i) > 1})}")
        for unit in units:
            current = self._entries.get(unit.id)
            if current is not None and not current.status.terminal:
                raise ScaleoutError(f"unit {unit.id} is already {current.status.state} here")
            if unit.resources.gpus > self.pool.size:
                self.pool.acquire(unit.resources.gpus)  # raises with the explanation
        for unit in units:
            attempt = self.folder / unit.id / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            dump_pickle((call_unit, (unit.fn, tuple(unit.args), dict(unit.kwargs))), attempt / "unit.pkl")
            status = UnitStatus(
                unit_id=unit.id,
                state=QUEUED,
                executor=self.name,
                submitted_at=time.time(),
                logs={"stdout": str(attempt / "stdout.log"), "stderr": str(attempt / "stderr.log")},
                result=str(attempt / "result.pkl"),
            )
            self._entries[unit.id] = _Entry(unit, status, attempt, min(unit.resources.cpus, self.cpus))
            self._waiting.append(unit.id)
        self._schedule()
        # job_id is the unit's process id once it started, '' while it waits for room.
        handles = []
        for unit in units:
            st = self._entries[unit.id].status
            handles.append(Handle(unit.id, st.job_id or "", dict(st.logs), st.result or ""))
        return handles

    def poll(self) -> dict[str, UnitStatus]:
        """Reaps finished units, starts waiting ones that now fit, and returns every tracked
        unit's status (copies)."""
        for unit_id in list(self._running):
            entry = self._entries[unit_id]
            code = entry.proc.poll() if entry.proc else None
            if code is None:
                limit = entry.unit.resources.time_min * 60
                if time.time() - (entry.status.started_at or time.time()) <= limit:
                    continue
                _kill_group(entry.proc)
                self._running.remove(unit_id)
                self._release(entry)
                entry.status.state = FAILED
                entry.status.ended_at = time.time()
                minutes = entry.unit.resources.time_min
                entry.status.error = f"unit ran past its time limit of {minutes} min and was stopped"
                continue
            self._finish(entry, code)
        self._schedule()
        return {uid: UnitStatus(**e.status.to_json()) for uid, e in self._entries.items()}

    def cancel(self, unit_id: str) -> None:
        """Stops a unit: a waiting one never starts; a running one's process group gets SIGTERM,
        then SIGKILL after 5 s. Its state becomes cancelled. Unknown ids raise ScaleoutError."""
        entry = self._entries.get(unit_id)
        if entry is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        if entry.status.terminal:
            return
        if unit_id in self._waiting:
            self._waiting.remove(unit_id)
        elif entry.proc is not None:
            _kill_group(entry.proc)
            self._running.remove(unit_id)
            self._release(entry)
            try:
                outcome = read_outcome(entry.status.result)
            except ScaleoutError:
                outcome = None
            if outcome is not None:  # it finished before the signal came
                settle_from_outcome(entry.status, outcome, ended=time.time())
                self._schedule()
                return
        entry.status.state = CANCELLED
        entry.status.ended_at = time.time()
        entry.status.error = "cancelled"
        self._schedule()

    def wait(self, timeout: float | None = None) -> dict[str, UnitStatus]:
        """Blocks until every tracked unit has ended (or `timeout` seconds passed) and returns
        the statuses."""
        return poll_until_ended(self, timeout)

    def attach(self, status: UnitStatus) -> bool:
        """Takes over a unit from an earlier process. Its subprocess ended with that process
        (units watch their parent), so only a result it left behind counts: returns True when
        there is one (the unit is settled from it), False when it must run again."""
        try:
            outcome = read_outcome(status.result) if status.result else None
        except ScaleoutError:
            outcome = None  # a torn or foreign file: run the unit again
        if outcome is None:
            return False
        status = UnitStatus(**status.to_json())
        settle_from_outcome(status, outcome, ended=Path(status.result).stat().st_mtime)
        self._entries[status.unit_id] = _Entry(None, status, Path(status.result).parent, 0)
        return True

    def result(self, unit_id: str) -> Any:
        """Returns a done unit's return value; raises UnitFailed otherwise."""
        entry = self._entries.get(unit_id)
        if entry is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        return outcome_value(entry.status)

    def close(self) -> None:
        """Cancels every unit still waiting or running."""
        for unit_id in list(self._waiting) + list(self._running):
            self.cancel(unit_id)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _cpus_in_use(self) -> int:
        return sum(self._entries[u].cpus for u in self._running)

    def _schedule(self) -> None:
        for unit_id in list(self._waiting):
            if self.max_parallel is not None and len(self._running) >= self.max_parallel:
                return
            entry = self._entries[unit_id]
            if self._running and self._cpus_in_use() + entry.cpus > self.cpus:
                continue
            gpus = self.pool.acquire(entry.unit.resources.gpus)
            if gpus is None:
                continue
            entry.gpus = gpus
            self._waiting.remove(unit_id)
            self._start(entry)

    def _start(self, entry: _Entry) -> None:
        env = dict(os.environ)
        if self.pool.size:
            # Units without GPUs see none, so they cannot allocate on a device lent to another.
            env["CUDA_VISIBLE_DEVICES"] = ",".join(entry.gpus or [])
        env["HUBKIT_UNIT_ID"] = entry.unit.id
        env["HUBKIT_SCALEOUT_PARENT"] = str(os.getpid())
        # Same machine, same paths: the unit imports what this process can import.
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        out = open(entry.status.logs["stdout"], "ab")  # noqa: SIM115 - handed to the child
        err = open(entry.status.logs["stderr"], "ab")  # noqa: SIM115
        try:
            entry.proc = subprocess.Popen(
                [self.python, "-m", "hubkit.scaleout._worker", str(entry.folder)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                # Its own process group, so cancel stops whatever the unit started too.
                start_new_session=True,
            )
        except OSError as e:
            self.pool.release(entry.gpus or [])
            entry.status.state = FAILED
            entry.status.error = f"could not start {self.python}: {e}"
            entry.status.ended_at = time.time()
            return
        finally:
            out.close()
            err.close()
        entry.status.state = RUNNING
        entry.status.started_at = time.time()
        entry.status.job_id = str(entry.proc.pid)
        self._running.append(entry.unit.id)

    def _release(self, entry: _Entry) -> None:
        if entry.gpus:
            self.pool.release(entry.gpus)
        entry.gpus = None

    def _finish(self, entry: _Entry, code: int) -> None:
        self._running.remove(entry.unit.id)
        self._release(entry)
        now = time.time()
        try:
            outcome = read_outcome(entry.status.result)
        except ScaleoutError as e:
            outcome = ("error", str(e))
        if outcome is not None:
            settle_from_outcome(entry.status, outcome, ended=now)
            return
        entry.status.state = FAILED
        entry.status.ended_at = now
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        stderr = tail(entry.status.logs["stderr"])
        entry.status.error = f"unit process ended without a result ({how})\n{stderr}".strip()


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
