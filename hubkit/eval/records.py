"""Run records (`runs/<run-id>/`) and the run store every later stage reads.

A record is lm-eval's own files, untouched, plus `record.json`: a typed, versioned RunRecord
(provenance, every attempt, and the result rows read from lm-eval's results file). It is built
under a temporary name, sealed (`seal.json`: size and sha256 of every file), renamed into place
and made read-only. Reading it checks the seal, so a record edited or truncated afterwards is an
error naming the run and the file instead of a number silently changed on a card.

`RunStore` answers what eval, card, publish, the Space and the CLI ask of the runs folder: the
records, the newest per (setup, subject), a cached identical run, an id from a prefix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import EvalError
from .results import ResultRow, parse_results

RECORD = "record.json"
SEAL = "seal.json"
LEGACY = "provenance.json"  # format 1 (hubkit 0.1): untyped, unsealed
RECORD_FORMAT = 2
PARTIAL_PREFIX = ".partial-"


class RecordError(EvalError):
    """A run record is missing, unreadable, or does not match its seal."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Attempt(_Model):
    """One load strategy tried for a run: what ran and how it ended."""

    strategy: str
    # "unavailable": the strategy cannot run here at all (vllm not installed, no GPU), so it was
    # not tried; its reason says why and the next strategy ran
    status: Literal["ok", "failed", "unavailable"]
    seconds: float
    command: list[str] | None = None
    call: dict[str, Any] | None = None
    exit_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    reason: str | None = None
    log: str | None = None
    log_tail: str | None = None
    output_dir: str | None = None


class ImportedFrom(_Model):
    """Where an imported run's numbers came from: the file and what it says about itself."""

    file: str = Field(description="Name of the results file as given to `hubkit runs import`.")
    sha256: str
    samples: list[str] = Field(default_factory=list, description="Names of the imported samples files.")
    facts: dict[str, Any] = Field(default_factory=dict, description="Versions, model args, git hash and date from the file.")


class RunRecord(_Model):
    """Everything known about one evaluation of one subject under one eval setup."""

    record_format: Literal[2] = RECORD_FORMAT
    hubkit_version: str
    run_id: str
    status: Literal["ok", "failed"]
    origin: Literal["local", "imported"] = "local"
    setup: str
    subject: str
    artifact: str | None = None
    repo_id: str | None = None
    base_model: str | None = None
    base_model_revision: str | None = None
    strategy: str | None = None
    fallback_reason: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    command: str | None = None
    call: dict[str, Any] | None = None
    reproduce: str | None = None
    cache_key: str | None = None
    setup_config: dict[str, Any] = Field(default_factory=dict)
    limit: int | float | None = None
    num_fewshot: int | None = None
    tasks: dict[str, Any] = Field(default_factory=dict)
    lm_eval_tasks: dict[str, str] = Field(default_factory=dict)
    lm_eval_version: str | None = None
    data_overrides: dict[str, Any] | None = None
    device: str | None = None
    env: dict[str, Any] = Field(default_factory=dict)
    weights: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    results_files: list[str] = Field(default_factory=list)
    samples_files: dict[str, str] = Field(default_factory=dict)
    rows: list[ResultRow] = Field(default_factory=list)
    imported: ImportedFrom | None = None

    _path: Path | None = PrivateAttr(None)
    _sealed: bool = PrivateAttr(True)
    _shadowed: frozenset = PrivateAttr(frozenset())  # tasks a newer record of the same setup and subject supersedes

    @property
    def path(self) -> Path:
        if self._path is None:
            raise RecordError(f"run {self.run_id} has not been written")
        return self._path

    @property
    def sealed(self) -> bool:
        """False for records of hubkit 0.1, which had no seal to check."""
        return self._sealed

    @property
    def shadowed(self) -> frozenset:
        return self._shadowed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def samples_file(self, task: str) -> Path | None:
        rel = self.samples_files.get(task)
        return self.path / rel if rel else None

    def results(self) -> dict:
        """lm-eval's results JSON as written (the last one, if several); {} for a failed run."""
        if not self.results_files:
            return {}
        return json.loads((self.path / self.results_files[-1]).read_text(encoding="utf-8"))

    def task_config(self, task: str) -> dict:
        """lm-eval's recorded config of `task` (under its lm-eval name), or {}."""
        configs = self.results().get("configs") or {}
        return configs.get(self.lm_eval_tasks.get(task, task)) or configs.get(task) or {}


# -- sealing ----------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != SEAL)


def seal(root: Path) -> dict:
    """Write `seal.json`: the size and sha256 of every file of the record. Returns it."""
    files = {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in _files(root)}
    data = {"format": 1, "files": files}
    (root / SEAL).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return data


def portable_seal(record_dir: Path, files: dict[str, "bytes | Path"]) -> bytes:
    """The seal of a record's published copy (machine paths replaced, code left out): sizes and
    sha256 of exactly the files published, and the sha256 of the original seal it derives from."""
    original = record_dir / SEAL
    old = json.loads(original.read_text(encoding="utf-8"))["files"] if original.is_file() else {}
    entries = {}
    for rel, src in files.items():
        if isinstance(src, Path):
            entries[rel] = old.get(src.relative_to(record_dir).as_posix()) or {"size": src.stat().st_size, "sha256": _sha256(src)}
        else:
            entries[rel] = {"size": len(src), "sha256": hashlib.sha256(src).hexdigest()}
    data = {"format": 1, "files": entries, "copy_of": _sha256(original) if original.is_file() else None}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def check_seal(root: Path, run_id: str, *, full: bool = False, hashed: frozenset[str] = frozenset()) -> None:
    """Raise RecordError when a sealed file is missing, resized or (record.json, the files in
    `hashed` (the results files), or every file when `full`) changed."""
    try:
        data = json.loads((root / SEAL).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"run {run_id}: {root / SEAL} is missing or unreadable ({exc})", hint=_REPAIR) from None
    for rel, facts in files.items():
        p = root / rel
        if not p.is_file():
            raise RecordError(f"run {run_id}: {rel} is missing from {root} (its seal names it)", hint=_REPAIR)
        if p.stat().st_size != facts["size"]:
            raise RecordError(f"run {run_id}: {p} was changed after the run (size {p.stat().st_size}, sealed {facts['size']})", hint=_REPAIR)
        if (full or rel == RECORD or rel in hashed) and _sha256(p) != facts["sha256"]:
            raise RecordError(f"run {run_id}: {p} was edited after the run (its sha256 no longer matches the seal)", hint=_REPAIR)


_REPAIR = "Records are immutable: restore the file, or move the record out of runs/ and run `hubkit eval --rerun`."


def freeze(path: Path) -> None:
    """Make a finished record read-only (files and folders)."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files + dirs:
            p = Path(root) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# -- reading ---------------------------------------------------------------------------------------


def load_record(path: str | Path, *, full_check: bool = False) -> RunRecord:
    """The record in folder `path`, its seal checked. Raises RecordError naming the run and file."""
    path = Path(path)
    if (path / RECORD).is_file():
        try:
            raw = json.loads((path / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RecordError(f"run {path.name}: {path / RECORD} is unreadable ({exc})", hint=_REPAIR) from None
        if not isinstance(raw, dict):
            raise RecordError(f"run {path.name}: {path / RECORD} is not a record", hint=_REPAIR)
        check_seal(path, raw.get("run_id", path.name), full=full_check, hashed=frozenset(raw.get("results_files") or []))
        try:
            record = RunRecord.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RecordError(f"run {path.name}: {path / RECORD}: {where}: {first['msg']}", hint=_REPAIR) from None
        record._path = path
        return record
    if (path / LEGACY).is_file():
        return _from_legacy(path)
    raise RecordError(f"{path}: not a run record (no {RECORD})", hint="`hubkit runs` lists the recorded runs.")


def _from_legacy(path: Path) -> RunRecord:
    """A hubkit 0.1 record (provenance.json, no seal), read into the typed record."""
    from .taskdata import from_lm_eval_name

    try:
        p = json.loads((path / LEGACY).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(f"run {path.name}: {path / LEGACY} is unreadable ({exc})", hint=_REPAIR) from None
    fields = set(RunRecord.model_fields)
    data = {k: v for k, v in p.items() if k in fields and k not in ("record_format", "rows", "attempts")}
    data["attempts"] = [{k: v for k, v in a.items() if k in Attempt.model_fields} for a in p.get("attempts") or []]
    data.setdefault("setup", p.get("setup") or "?")
    data.setdefault("subject", p.get("subject") or "?")
    data.setdefault("hubkit_version", p.get("hubkit_version") or "0.1.0")
    record = RunRecord.model_validate(data)
    record._path = path
    record._sealed = False
    for rel in [*record.results_files, *record.samples_files.values()]:
        if not (path / rel).is_file():
            raise RecordError(f"run {record.run_id}: {rel} is missing from {path} (its provenance.json names it)", hint=_REPAIR)
    if record.ok and record.results_files:
        rows = parse_results(record.results(), local_name=from_lm_eval_name)
        record = record.model_copy(update={"rows": rows})
        record._path, record._sealed = path, False
    return record


# -- the store -------------------------------------------------------------------------------------


class RunStore:
    """The runs folder: records, the newest per setup and subject, cache lookups, id prefixes.

    Records that fail their checks are collected in `problems` (and raise in `records(strict=True)`),
    never silently skipped."""

    def __init__(self, runs_dir: str | Path):
        self.root = Path(runs_dir)
        self._records: list[RunRecord] | None = None
        self.problems: list[str] = []

    def records(self, *, strict: bool = False) -> list[RunRecord]:
        """Every readable record, oldest first. With `strict`, a damaged one raises RecordError."""
        if self._records is None:
            self._records, self.problems = [], []
            if self.root.is_dir():
                for child in sorted(self.root.iterdir()):
                    if child.name.startswith(".") or not child.is_dir():
                        continue
                    if not (child / RECORD).is_file() and not (child / LEGACY).is_file():
                        continue
                    try:
                        self._records.append(load_record(child))
                    except RecordError as exc:
                        self.problems.append(str(exc))
            self._records.sort(key=lambda r: (r.started_at or "", r.run_id))
        if strict and self.problems:
            raise RecordError(self.problems[0] + (f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""), hint=_REPAIR)
        return list(self._records)

    def latest(self, *, setup: str | None = None, strict: bool = True) -> list[RunRecord]:
        """The newest successful results per (setup, subject, task), oldest record first.

        A rerun supersedes the older record; records of different tasks under one setup (two
        imported files, say) both stay. A task an older record shares with a newer one is marked
        `shadowed` on the older record, so its number is not shown twice."""
        covered: dict[tuple[str, str], set[str]] = {}
        keep = []
        for rec in reversed(self.records(strict=strict)):
            if not rec.ok or (setup is not None and rec.setup != setup):
                continue
            seen = covered.setdefault((rec.setup, rec.subject), set())
            tasks = {r.task for r in rec.rows}
            if tasks and tasks <= seen:
                continue
            rec._shadowed = frozenset(tasks & seen)
            seen |= tasks
            keep.append(rec)
        return keep[::-1]

    def find_cached(self, cache_key: str) -> RunRecord | None:
        for rec in reversed(self.records()):
            if rec.cache_key == cache_key and rec.ok and rec.origin == "local":
                return rec
        return None

    def resolve(self, ref: str) -> RunRecord:
        """A record by folder path, run id, or a unique prefix of a run id."""
        p = Path(ref)
        if (p / RECORD).is_file() or (p / LEGACY).is_file():
            return load_record(p)
        records = self.records()
        exact = [r for r in records if r.run_id == ref]
        matches = exact or [r for r in records if r.run_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise EvalError(f"no run record {ref!r} in {self.root}", hint="`hubkit runs` lists the recorded runs.")
        raise EvalError(f"{ref!r} matches {len(matches)} runs in {self.root}", hint="Give more of the run id: " + ", ".join(r.run_id for r in matches[:5]))

    # -- writing -------------------------------------------------------------------------------

    def start(self, run_id: str) -> Path:
        """A fresh temporary folder for a record being made (swept if its process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{PARTIAL_PREFIX}{run_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    def commit(self, tmp: Path, record: RunRecord) -> RunRecord:
        """Write record.json into `tmp`, seal it, rename it into place (a new id suffix if the
        name is taken, e.g. two evals in the same second) and make it read-only."""
        base_id = record.run_id
        named = str(self.root / base_id)  # the folder the record's paths and files name now
        for attempt in range(1, 100):
            run_id = base_id if attempt == 1 else f"{base_id}-{attempt}"
            final = self.root / run_id
            if final.exists():
                continue
            if str(final) != named:  # a new suffix: the paths it recorded must name this folder, not the taken one
                _repoint(tmp, named, str(final))
                record = RunRecord.model_validate_json(_repoint_text(record.model_dump_json(), named, str(final)))
                named = str(final)
            body = record.model_copy(update={"run_id": run_id})
            (tmp / RECORD).write_text(body.model_dump_json(indent=2) + "\n", encoding="utf-8")
            seal(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if final.exists():
                    continue
                raise
            freeze(final)
            self._records = None
            return load_record(final)
        raise RecordError(f"could not find a free run id for {base_id} in {self.root}")

    def sweep(self) -> list[str]:
        """Remove partial records whose process is gone (a killed eval). Returns their names."""
        swept = []
        if not self.root.is_dir():
            return swept
        for child in self.root.iterdir():
            if not child.name.startswith(PARTIAL_PREFIX) or not child.is_dir():
                continue
            pid = child.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _alive(int(pid)):
                continue
            _make_writable(child)
            shutil.rmtree(child, ignore_errors=True)
            swept.append(child.name)
        return swept


def _repoint_text(text: str, old: str, new: str) -> str:
    """`text` with the folder path `old` (whole, not as the prefix of a longer name) as `new`."""
    return re.sub(re.escape(old) + r"(?![\w.-])", lambda m: new, text)


def _repoint(root: Path, old: str, new: str) -> None:
    """Point the text files of a record being made at its folder's new name."""
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.suffix in (".json", ".jsonl", ".log", ".txt", ".lock", ".yaml"):
            text = p.read_text(encoding="utf-8", errors="surrogateescape")
            moved = _repoint_text(text, old, new)
            if moved != text:
                p.write_text(moved, encoding="utf-8", errors="surrogateescape")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_writable(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# -- compatibility helpers (the few callers that take a folder) -----------------------------------------


def list_records(runs_dir: str | Path) -> list[RunRecord]:
    """Readable records under `runs_dir`, oldest first (damaged ones are left out: see RunStore)."""
    return RunStore(runs_dir).records()


def resolve_record(runs_dir: str | Path, ref: str) -> RunRecord:
    return RunStore(runs_dir).resolve(ref)


def read_samples(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
