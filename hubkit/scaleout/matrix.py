"""A matrix of units across runs: a JSON state file that makes reruns do only what is missing.

`Matrix(path).run(units, executor)` skips units the file records as done, resumes watching
units an earlier (killed) run left queued or running when the executor can still see them,
submits the rest (never run, failed, cancelled, lost), and writes the file atomically on every
change, so a kill at any moment leaves a file the next run can trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit.scaleout.units import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Executor,
    ScaleoutError,
    Unit,
    UnitStatus,
    error_summary,
    outcome_value,
)

FORMAT = "hubkit.scaleout.matrix/1"


@dataclass
class MatrixRun:
    """What one `Matrix.run` did: the final status of each of its units, and which units it
    submitted, resumed watching (`reattached`) or left alone because they were done (`skipped`)."""

    statuses: dict[str, UnitStatus]
    submitted: list[str] = field(default_factory=list)
    reattached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every unit of the run is done."""
        return all(s.state == DONE for s in self.statuses.values())

    @property
    def unfinished(self) -> list[str]:
        """The units that are not done (failed, cancelled, or still in flight after a timeout)."""
        return [u for u, s in self.statuses.items() if s.state != DONE]


class Matrix:
    """The state file of a set of units (JSON at `path`; a sibling `.lock` file guards runs)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, UnitStatus]:
        """Returns the recorded status of every unit ({} when there is no file yet). Raises
        ScaleoutError when the file is not a matrix state file."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as e:
            raise ScaleoutError(f"unreadable matrix state {self.path}: {e}", path=self.path) from e
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("units"), dict):
            raise ScaleoutError(f"{self.path} is not a {FORMAT} state file", path=self.path)
        return {uid: UnitStatus.from_json(s) for uid, s in data["units"].items()}

    def save(self, statuses: Mapping[str, UnitStatus]) -> None:
        """Writes the statuses atomically (temporary file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "updated_at": time.time(),
            "units": {uid: s.to_json() for uid, s in sorted(statuses.items())},
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def forget(self, unit_ids: Iterable[str]) -> None:
        """Drops what the file records of `unit_ids`, so the next run submits them afresh (their
        work is to be redone). A unit still in flight is kept: raises ScaleoutError for it."""
        with self._lock():
            recorded = self.load()
            for uid in unit_ids:
                status = recorded.get(uid)
                if status is not None and not status.terminal:
                    raise ScaleoutError(
                        f"unit {uid} is still {status.state} ({status.executor} job {status.job_id})",
                        hint="Wait for it (a rerun resumes watching it), or cancel it first.",
                        path=self.path,
                    )
                recorded.pop(uid, None)
            self.save(recorded)

    def missing(self, units: Iterable[Unit]) -> list[Unit]:
        """Returns the units the file does not record as done (a rerun's work, at most)."""
        recorded = self.load()
        return [u for u in units if (s := recorded.get(u.id)) is None or s.state != DONE]

    def result(self, unit_id: str) -> Any:
        """Returns the value a done unit returned, from its result file. Raises ScaleoutError
        for an unknown unit and UnitFailed for one that is not done."""
        status = self.load().get(unit_id)
        if status is None:
            raise ScaleoutError(f"{self.path} records no unit {unit_id}")
        return outcome_value(status)

    def run(
        self,
        units: Iterable[Unit],
        executor: Executor,
        *,
        on_update: Callable[[dict[str, UnitStatus]], None] | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
    ) -> MatrixRun:
        """Brings every unit to an end: skips done ones, reattaches in-flight ones, submits the
        rest, then polls until all ended (or `timeout` seconds passed), saving the file on each
        change and calling `on_update` with this run's statuses. Returns a MatrixRun; failed
        units do not raise. Raises ScaleoutError when another run holds the matrix or when a
        submission is refused (what was submitted before is saved)."""
        units = list(units)
        ids = [u.id for u in units]
        if len(set(ids)) != len(ids):
            raise ScaleoutError(f"unit ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        wanted = set(ids)
        interval = poll_interval if poll_interval is not None else getattr(executor, "poll_interval", 1.0)
        with self._lock():
            recorded = self.load()
            report = MatrixRun(statuses={})
            to_submit: list[Unit] = []
            for unit in units:
                status = recorded.get(unit.id)
                if status is not None and status.state == DONE:
                    report.skipped.append(unit.id)
                elif (
                    status is not None
                    and not status.terminal
                    and status.executor == executor.name
                    and executor.attach(status)
                ):
                    report.reattached.append(unit.id)
                else:
                    to_submit.append(unit)
            try:
                if to_submit:
                    executor.submit(to_submit)
                    report.submitted = [u.id for u in to_submit]
            finally:
                recorded.update({u: s for u, s in executor.poll().items() if u in wanted})
                self.save(recorded)
            deadline = None if timeout is None else time.monotonic() + timeout
            last: dict[str, Any] = {}
            while True:
                current = executor.poll()
                recorded.update({u: s for u, s in current.items() if u in wanted})
                mine = {u: recorded[u] for u in ids}
                snapshot = {u: s.to_json() for u, s in mine.items()}
                if snapshot != last:
                    self.save(recorded)
                    last = snapshot
                    if on_update is not None:
                        on_update(dict(mine))
                if all(s.terminal for s in mine.values()):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(interval)
            report.statuses = mine
            return report

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # One run per matrix: two would submit the same missing units twice.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise ScaleoutError(
                    f"another run is using {self.path}",
                    hint="Wait for it to finish, or stop it; a rerun resumes where it left off.",
                    path=self.path,
                ) from e
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def format_duration(seconds: float | None) -> str:
    """Returns '4.2s', '3m05s' or '2h07m' ('-' for None)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


_ORDER = {RUNNING: 0, QUEUED: 1, FAILED: 2, CANCELLED: 3, DONE: 4}


def render_view(statuses: Mapping[str, UnitStatus | None], now: float | None = None) -> str:
    """Returns the live view of a matrix as text: a count per state, then one line per unit
    (running first, done last) with its job, how long it has waited/run/taken, and the error
    of a failed or cancelled unit. `None` statuses are units not submitted yet."""
    now = time.time() if now is None else now
    counts = {state: 0 for state in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)}
    not_submitted = 0
    for status in statuses.values():
        if status is None:
            not_submitted += 1
        else:
            counts[status.state] += 1
    head = f"{len(statuses)} units: " + ", ".join(f"{n} {state}" for state, n in counts.items())
    if not_submitted:
        head += f", {not_submitted} not submitted"
    rows = []
    for unit_id, status in statuses.items():
        if status is None:
            rows.append((9, unit_id, "-", "-", "-", ""))
            continue
        if status.state == QUEUED:
            when = f"waiting {format_duration(now - status.submitted_at) if status.submitted_at else '-'}"
        elif status.state == RUNNING:
            when = f"running {format_duration(now - status.started_at) if status.started_at else '-'}"
        elif status.started_at is not None and status.ended_at is not None:
            when = format_duration(status.ended_at - status.started_at)
        else:
            when = "-"
        note = error_summary(status.error) if status.state in (FAILED, CANCELLED) else ""
        rows.append((_ORDER[status.state], unit_id, status.state, status.job_id or "-", when, note))
    rows.sort(key=lambda r: (r[0], r[1]))
    table = [("unit", "state", "job", "time", "")] + [r[1:] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = [head]
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append(("  " + "  ".join(cells) + ("  " + row[4] if row[4] else "")).rstrip())
    return "\n".join(lines)
