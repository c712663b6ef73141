"""Run units one after another inside this process.

For a machine with nothing to share out (no GPU pool, or one unit at a time): a subprocess per
unit would only add an interpreter start, and the caller would lose the unit's progress lines
and its typed errors. Units run when polled, so a matrix watching them records each as running
before it starts and done or failed after.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterable
from typing import Any

from hubkit.scaleout.units import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Handle,
    ScaleoutError,
    Unit,
    UnitFailed,
    UnitStatus,
)


class InlineExecutor:
    """Runs each unit in this process, in submission order, one per `poll` call.

    `poll` first marks the next queued unit running and returns (so watchers see it), and runs it
    on the following call. A unit's exception fails it, its traceback kept as the error and the
    exception itself kept for `exception()`; KeyboardInterrupt and SystemExit propagate. Units
    of an earlier process cannot be taken over (`attach` returns False): they died with it.
    """

    name = "inline"
    poll_interval = 0.0

    def __init__(self) -> None:
        self._units: dict[str, Unit] = {}
        self._status: dict[str, UnitStatus] = {}
        self._values: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}
        self._order: list[str] = []

    def submit(self, units: Iterable[Unit]) -> list[Handle]:
        """Queues `units`; returns a handle each (job id: this process id)."""
        handles = []
        for unit in units:
            current = self._status.get(unit.id)
            if current is not None and not current.terminal:
                raise ScaleoutError(f"unit {unit.id} is already {current.state} here")
            self._units[unit.id] = unit
            self._status[unit.id] = UnitStatus(unit_id=unit.id, state=QUEUED, executor=self.name, job_id=str(os.getpid()), submitted_at=time.time())
            self._order.append(unit.id)
            handles.append(Handle(unit.id, str(os.getpid()), {}, ""))
        return handles

    def poll(self) -> dict[str, UnitStatus]:
        """Runs the unit marked running by the previous call, or marks the next queued one
        running; returns every unit's status (copies)."""
        running = [u for u in self._order if self._status[u].state == RUNNING]
        if running:
            self._run(running[0])
        else:
            queued = [u for u in self._order if self._status[u].state == QUEUED]
            if queued:
                status = self._status[queued[0]]
                status.state, status.started_at = RUNNING, time.time()
        return {u: UnitStatus(**s.to_json()) for u, s in self._status.items()}

    def _run(self, unit_id: str) -> None:
        unit, status = self._units[unit_id], self._status[unit_id]
        try:
            self._values[unit_id] = unit.fn(*unit.args, **dict(unit.kwargs))
        except Exception as e:  # noqa: BLE001 - a unit's failure is its state, not the caller's crash
            self._errors[unit_id] = e
            status.state, status.error = FAILED, traceback.format_exc()
        else:
            status.state, status.error = DONE, None
        status.ended_at = time.time()

    def cancel(self, unit_id: str) -> None:
        """A queued unit never runs; a running one cannot be stopped from inside (it is this process)."""
        status = self._status.get(unit_id)
        if status is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        if status.state == QUEUED:
            status.state, status.ended_at, status.error = CANCELLED, time.time(), "cancelled"

    def wait(self, timeout: float | None = None) -> dict[str, UnitStatus]:
        """Runs every queued unit (ignoring `timeout`: a unit in this process cannot be left
        behind) and returns the statuses."""
        while not all(s.terminal for s in self._status.values()):
            self.poll()
        return self.poll()

    def attach(self, status: UnitStatus) -> bool:
        """False: a unit of an earlier process ended with it."""
        return False

    def result(self, unit_id: str) -> Any:
        """Returns a done unit's return value; raises UnitFailed otherwise."""
        status = self._status.get(unit_id)
        if status is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        if status.state != DONE:
            raise UnitFailed(status)
        return self._values[unit_id]

    def exception(self, unit_id: str) -> BaseException | None:
        """The exception a failed unit raised, or None."""
        return self._errors.get(unit_id)
