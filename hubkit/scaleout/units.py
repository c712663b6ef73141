"""Units of work, their states, and the interface every executor implements.

A unit is a picklable callable with its arguments and the resources it needs. Executors run
units somewhere (subprocesses here, Slurm jobs) and report each one's state; they know nothing
about evaluation. The job side of every executor runs `call_unit`, so a unit's outcome has one
format wherever it ran: `("success", {"value", "started", "ended"})` or `("error", traceback)`.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hubkit.errors import HubkitError


class ScaleoutError(HubkitError):
    """A unit could not be submitted, tracked or read back."""


class UnitFailed(ScaleoutError):
    """A unit ran and failed, or ended without a result. `status` says how."""

    def __init__(self, status: UnitStatus):
        self.status = status
        super().__init__(
            f"unit {status.unit_id} {status.state}: {error_summary(status.error) or 'no error text'}",
            hint=f"Its logs: {status.logs.get('stderr') or status.logs.get('stdout') or 'none kept'}",
        )


QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
TERMINAL = frozenset({DONE, FAILED, CANCELLED})

# Unit ids name folders and Slurm job names, so they are kept to a portable alphabet.
_UNIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


@dataclass(frozen=True)
class Resources:
    """What one unit needs: CPU cores, GPUs, memory (GiB, None = the scheduler's default) and
    a wall-time limit in minutes."""

    cpus: int = 1
    gpus: int = 0
    mem_gb: float | None = None
    time_min: int = 60

    def __post_init__(self) -> None:
        if self.cpus < 1 or self.gpus < 0 or self.time_min < 1 or (self.mem_gb is not None and self.mem_gb <= 0):
            raise ScaleoutError(
                f"invalid resources {self}: cpus >= 1, gpus >= 0, time_min >= 1 and mem_gb > 0 if given"
            )


@dataclass(frozen=True)
class Unit:
    """One unit of work: `fn(*args, **kwargs)` with `resources`, known by `id` across runs.

    `fn` and its arguments must pickle (cloudpickle where installed); the process that runs the
    unit must be able to import whatever they refer to by module name.
    """

    id: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _UNIT_ID.fullmatch(self.id):
            raise ScaleoutError(
                f"invalid unit id {self.id!r}",
                hint="Use letters, digits and . _ + = - (at most 200, not starting with a symbol); "
                "hubkit.scaleout.unit_id() builds one from parts.",
            )
        if not callable(self.fn):
            raise ScaleoutError(f"unit {self.id}: fn is not callable ({type(self.fn).__name__})")


def unit_id(*parts: object) -> str:
    """Returns a valid unit id joining `parts` with '__', other characters replaced by '-'."""
    text = "__".join(re.sub(r"[^A-Za-z0-9._+=-]+", "-", str(p)).strip("-") or "x" for p in parts)
    if not text[:1].isalnum():
        text = "u" + text
    return text[:200]


@dataclass
class UnitStatus:
    """Where one unit stands. Times are Unix seconds; `logs` maps 'stdout'/'stderr' to paths;
    `result` is the file the unit's outcome is (or will be) written to."""

    unit_id: str
    state: str
    executor: str
    job_id: str | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    logs: dict[str, str] = field(default_factory=dict)
    result: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the unit will not change state again (done, failed or cancelled)."""
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict (the form kept in a matrix state file)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnitStatus:
        """Returns the status stored by `to_json`; raises ScaleoutError when it is malformed."""
        try:
            status = cls(**data)
        except TypeError as e:
            raise ScaleoutError(f"malformed unit status {dict(data)!r}: {e}") from e
        if status.state not in STATES:
            raise ScaleoutError(f"unit {status.unit_id}: unknown state {status.state!r}")
        return status


@dataclass(frozen=True)
class Handle:
    """What `submit` returns for one unit: the executor's id for it and where its files go."""

    unit_id: str
    job_id: str
    logs: dict[str, str]
    result: str


@runtime_checkable
class Executor(Protocol):
    """Runs units somewhere and reports their states.

    `submit` starts (or queues) units and returns one handle each; `poll` returns the status
    of every unit this executor tracks without blocking; `cancel` stops one unit; `wait` blocks
    until every tracked unit is done, failed or cancelled and returns the statuses; `attach`
    resumes tracking a unit submitted by an earlier process (from its stored status) and returns
    False when that unit can no longer finish, so it must be submitted again; `result` returns
    a done unit's return value or raises UnitFailed.
    """

    name: str
    poll_interval: float  # seconds between two looks while waiting

    def submit(self, units: Iterable[Unit]) -> list[Handle]: ...

    def poll(self) -> dict[str, UnitStatus]: ...

    def cancel(self, unit_id: str) -> None: ...

    def wait(self, timeout: float | None = None) -> dict[str, UnitStatus]: ...

    def attach(self, status: UnitStatus) -> bool: ...

    def result(self, unit_id: str) -> Any: ...


def poll_until_ended(executor: Executor, timeout: float | None = None) -> dict[str, UnitStatus]:
    """Polls `executor` every `executor.poll_interval` seconds until every unit it tracks has
    ended (or `timeout` seconds passed); returns the last statuses. The `wait` of executors
    whose units run elsewhere."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        statuses = executor.poll()
        if all(s.terminal for s in statuses.values()):
            return statuses
        if deadline is not None and time.monotonic() >= deadline:
            return statuses
        time.sleep(executor.poll_interval)


def call_unit(fn: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Runs a unit on the job side. Returns {"value", "started", "ended"}; exceptions propagate
    (the executor's job wrapper records their traceback)."""
    started = time.time()
    value = fn(*args, **dict(kwargs))
    return {"value": value, "started": started, "ended": time.time()}


def dump_pickle(obj: Any, path: Path) -> None:
    """Writes `obj` to `path` atomically, with cloudpickle when installed (it carries functions
    defined in __main__ or registered by value) and pickle otherwise."""
    try:
        import cloudpickle as pickler
    except ImportError:  # pragma: no cover - cloudpickle comes with submitit
        pickler = pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            pickler.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_outcome(path: str | Path) -> tuple[str, Any] | None:
    """Returns a unit's outcome ("success", envelope) or ("error", traceback text) from its
    result file, or None while there is none. Raises ScaleoutError when the file is unreadable."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with path.open("rb") as f:
            outcome = pickle.load(f)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ScaleoutError(f"unreadable unit result {path}: {type(e).__name__}: {e}") from e
    if not (isinstance(outcome, tuple) and len(outcome) == 2 and outcome[0] in ("success", "error")):
        raise ScaleoutError(f"unit result {path} is not an executor outcome")
    return outcome


def settle_from_outcome(status: UnitStatus, outcome: tuple[str, Any], *, ended: float | None = None) -> None:
    """Marks `status` done or failed from its outcome, taking start/end times from the unit's
    own clock when it recorded them."""
    kind, payload = outcome
    if kind == "success":
        status.state = DONE
        status.error = None
        if isinstance(payload, dict):
            status.started_at = payload.get("started", status.started_at)
            status.ended_at = payload.get("ended", ended or status.ended_at)
    else:
        status.state = FAILED
        status.error = str(payload).strip()
        status.ended_at = status.ended_at or ended
    if status.ended_at is None:
        status.ended_at = ended or time.time()


def outcome_value(status: UnitStatus) -> Any:
    """Returns the return value of a done unit from its result file; raises UnitFailed when the
    unit is not done or its result file is missing."""
    if status.state != DONE or not status.result:
        raise UnitFailed(status)
    outcome = read_outcome(status.result)
    if outcome is None or outcome[0] != "success":
        raise UnitFailed(status)
    payload = outcome[1]
    return payload["value"] if isinstance(payload, dict) and "value" in payload else payload


def error_summary(text: str | None) -> str:
    """Returns the last non-empty line of a traceback (the exception itself), or of any text."""
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def tail(path: str | Path | None, lines: int = 20) -> str:
    """Returns the last `lines` lines of a log file, or '' when it does not exist."""
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
