"""`hubkit eval` as a matrix of units, run on an executor: this machine, Slurm, or HF Jobs.

A unit is (an eval setup's subjects, a shard of its tasks). Each unit runs `run_eval_unit`
where it lands: the setup is prepared there (its pinned environment reused), the subjects are
evaluated (sharing processes where sound) and their sealed records written to the same run
store. The matrix state (`runs/.scaleout/matrix.json`) follows every unit: a rerun after a
failure or a kill submits only the units whose subjects have no record yet, and follows units
still queued or running instead of submitting them twice. `hubkit runs status` shows it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import EvalError, HubkitError
from ..manifest import Manifest
from .core import EvalOutcome, SetupContext, SubjectPlan, plan_subjects, prepare_setup, run_planned
from .records import RecordError, RunStore, load_record

MATRIX_FILE = Path(".scaleout") / "matrix.json"
Say = Callable[[str], None]


@dataclass(frozen=True)
class EvalUnit:
    """What a unit's job needs to run its part of an eval: names and paths, never a secret (the
    manifest is read again where the unit runs; tokens travel in its environment)."""

    manifest: str
    setup: str
    subjects: tuple[str, ...]
    runs_dir: str
    tasks: tuple[str, ...] | None = None
    limit: int | float | None = None
    env_kind: str | None = None
    rerun: bool = False
    include_base: bool | None = None
    artifact: str | None = None
    endpoint: str | None = None
    gpus: int = 0
    share: bool = True


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_eval_unit(unit: EvalUnit) -> dict[str, str]:
    """Runs one unit where it landed. Returns {subject: run id} of the records it wrote (or
    found cached). Raises EvalError / EnvError as `hubkit eval` would."""
    from ..manifest import load_manifest

    manifest = load_manifest(Path(unit.manifest).resolve())
    store = RunStore(Path(unit.runs_dir).resolve())
    ctx = prepare_setup(
        manifest, unit.setup, limit=unit.limit, env_kind=unit.env_kind, store=store, say=_stderr, endpoint=unit.endpoint,
        tasks=list(unit.tasks) if unit.tasks else None, gpus=unit.gpus, share=unit.share,
    )  # fmt: skip
    plans = plan_subjects(ctx, unit.artifact, unit.include_base, names=list(unit.subjects))
    return {o.subject: o.record.run_id for o in run_planned(ctx, plans, rerun=unit.rerun)}


def _run_prepared(ctx: SetupContext, plans: list[SubjectPlan], rerun: bool) -> dict[str, str]:
    # the inline executor's unit: the setup was prepared by this very process already
    return {o.subject: o.record.run_id for o in run_planned(ctx, plans, rerun=rerun)}


# -- settings -----------------------------------------------------------------------------------------


def effective_settings(manifest: Manifest, overrides: dict | None = None):
    """The manifest's `scaleout` section with `overrides` (same shape, nested dicts merged)
    applied and validated. Raises EvalError naming a bad override."""
    from pydantic import ValidationError

    from ..manifest import Scaleout

    data = manifest.scaleout.model_dump()
    for key, value in (overrides or {}).items():
        if value is None or key in ("poll_interval", "hf_jobs_launcher", "hf_jobs_python"):
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            data[key] = value
    try:
        return Scaleout.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EvalError(f"scaleout.{where}: {first['msg']}", hint="See `hubkit eval --help` and the manifest's scaleout section.") from None


def shards(tasks: list[str], n: int) -> list[list[str]]:
    """`tasks` cut into at most `n` shards, round-robin (so big neighbouring tasks spread)."""
    n = max(1, min(n, len(tasks)))
    return [tasks[i::n] for i in range(n)]


def _chunks(items: list, size: int) -> list[list]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# -- the matrix --------------------------------------------------------------------------------------


@dataclass
class _Cell:
    """A planned unit: the subjects it covers, those it must still run, and how to run it."""

    setup: str
    unit_id: str
    plans: list[SubjectPlan]
    missing: list[SubjectPlan]
    cached: dict[str, Any]


def run_matrix(
    manifest: Manifest,
    names: list[str],
    *,
    artifact: str | None,
    limit,
    env_kind: str | None,
    rerun: bool,
    include_base: bool | None,
    runs_dir: Path,
    say: Say,
    endpoint: str | None,
    executor: str | None,
    overrides: dict,
    token: str | None,
) -> list[EvalOutcome]:
    """Plan the units of `names`, run the missing ones on the executor, and return every
    subject's outcome (see `run_eval`)."""
    from ..scaleout import Matrix, unit_id

    settings = effective_settings(manifest, overrides)
    kind = executor or settings.executor
    if kind not in ("local", "slurm", "hf-jobs"):
        raise EvalError(f"--executor {kind}: expected local, slurm or hf-jobs")
    store = RunStore(runs_dir)
    matrix = Matrix(runs_dir / MATRIX_FILE)
    recorded = _load(matrix)
    # A unit on another node writes its record under a temporary name whose process this
    # machine cannot see: leftovers are swept only when no job of this matrix is in flight.
    if not any(not s.terminal and s.executor in ("slurm", "hf-jobs") for s in recorded.values()):
        for swept in store.sweep():
            say(f"   removed {swept}: a run record left unfinished by an eval that was killed")

    visible = _visible_gpus() if kind == "local" else []
    cells: list[_Cell] = []
    contexts: dict[str, SetupContext] = {}
    for name in names:
        setup = manifest.evals[name]
        resources = _resources(settings, setup, kind, visible, overrides.get("resources"))
        task_groups = shards(list(setup.tasks), settings.task_shards)
        for k, shard in enumerate(task_groups):
            ctx = prepare_setup(
                manifest, name, limit=limit, env_kind=env_kind, store=store, say=say, endpoint=endpoint,
                tasks=shard if len(task_groups) > 1 else None, gpus=resources.gpus, share=settings.one_process,
            )  # fmt: skip
            plans = plan_subjects(ctx, artifact, include_base)
            slots = max(1, len(visible) // resources.gpus) if (kind == "local" and resources.gpus) else 1
            per_unit = settings.subjects_per_unit or max(1, math.ceil(len(plans) / slots))
            for group in _chunks(plans, per_unit):
                shard_label = f"tasks-{k + 1}-of-{len(task_groups)}" if len(task_groups) > 1 else None
                identity = [name, shard, [p.cache_key for p in group], settings.one_process, kind, resources.gpus]
                uid = unit_id(*[p for p in (name, shard_label, "+".join(p.subject.name for p in group)) if p], _digest(identity)[:10])
                cached = {} if rerun else {p.subject.name: store.find_cached(p.cache_key) for p in group}
                done_before = _done_records(matrix, recorded.get(uid), store) if not rerun else {}
                for p in group:
                    if not cached.get(p.subject.name) and p.subject.name in done_before:
                        cached[p.subject.name] = done_before[p.subject.name]
                missing = [p for p in group if not cached.get(p.subject.name)]
                cells.append(_Cell(name, uid, group, missing, cached))
                contexts[uid] = ctx
                for p in group:
                    if cached.get(p.subject.name):
                        say(f"   {p.subject.name}: cached run {cached[p.subject.name].run_id} ({cached[p.subject.name].strategy})")

    todo = [c for c in cells if c.missing]
    results: dict[str, dict[str, str]] = {}
    unit_errors: dict[str, str] = {}
    if todo:
        from ..scaleout import Unit

        resources_of = {c.unit_id: _resources(settings, manifest.evals[c.setup], kind, visible, overrides.get("resources")) for c in todo}
        exe = _executor(kind, settings, runs_dir, visible, todo, resources_of, overrides, endpoint, token, manifest, say)
        units = []
        for cell in todo:
            ctx = contexts[cell.unit_id]
            if exe.name == "inline":
                fn, args = functools.partial(_run_prepared, ctx, cell.missing, rerun), ()
            else:
                fn = run_eval_unit
                args = (EvalUnit(
                    manifest=str(manifest._source.resolve()) if manifest._source else str(manifest.root / "hubkit.yaml"),
                    setup=cell.setup, subjects=tuple(p.subject.name for p in cell.missing), runs_dir=str(runs_dir.resolve()),
                    tasks=tuple(ctx.setup.tasks) if list(ctx.setup.tasks) != list(manifest.evals[cell.setup].tasks) else None,
                    limit=limit, env_kind=env_kind, rerun=rerun, include_base=include_base, artifact=artifact,
                    endpoint=endpoint, gpus=ctx.gpus, share=ctx.share,
                ),)  # fmt: skip
            units.append(Unit(cell.unit_id, fn, args, resources=resources_of[cell.unit_id].scaleout()))
        stale = [u.id for u in units if (s := recorded.get(u.id)) is not None and s.state == "done"]
        if stale:
            matrix.forget(stale)
        view = LiveView(say, quiet=exe.name == "inline" and len(units) == 1)
        run = matrix.run(units, exe, on_update=view.update, poll_interval=overrides.get("poll_interval"))
        view.close(run.statuses)
        for cell in todo:
            status = run.statuses[cell.unit_id]
            if status.state == "done":
                try:
                    results[cell.unit_id] = exe.result(cell.unit_id)
                    if kind == "hf-jobs":
                        adopt(store, exe.outputs(cell.unit_id), results[cell.unit_id].values())
                except HubkitError as exc:
                    unit_errors[cell.unit_id] = str(exc)
                continue
            raised = exe.exception(cell.unit_id) if hasattr(exe, "exception") else None
            # inline: the unit's own error, as `hubkit eval` always raised it (a full disk or a
            # read-only folder included: the error table names the file and exits 4)
            if isinstance(raised, (HubkitError, OSError, MemoryError)):
                raise raised
            unit_errors[cell.unit_id] = _unit_failure(status)

    outcomes: list[EvalOutcome] = []
    failures: list[str] = []
    for cell in cells:
        got = results.get(cell.unit_id, {})
        for plan in cell.plans:
            name = plan.subject.name
            if cell.cached.get(name):
                outcomes.append(EvalOutcome(name, cell.cached[name], True))
                continue
            run_id = got.get(name)
            if run_id is None:
                if cell.unit_id in unit_errors:
                    failures.append(f"{cell.setup}/{name}: unit {cell.unit_id} {unit_errors[cell.unit_id]}")
                continue
            record = load_record(store.root / run_id)  # written by the unit, maybe in another process
            outcomes.append(EvalOutcome(name, record, False, list(record.attempts)))
            if not record.ok:
                failures.append(f"{cell.setup}/{name}: " + "; ".join(f"{a.strategy}: {a.reason}" for a in record.attempts))
    if failures:
        hint = f"Each attempt's log is in its run record under {store.root}."
        if unit_errors:
            hint += " `hubkit eval` again runs only the units that did not finish; `hubkit runs status` shows them."
        raise EvalError("every strategy failed for " + ", ".join(failures) if not unit_errors else "; ".join(failures), hint=hint)
    return outcomes


def adopt(store: RunStore, outputs: Path | None, run_ids) -> None:
    """Bring records a unit wrote elsewhere (downloaded to `outputs/runs/`) into the store: each
    is checked against its seal, moved in under its own id, and made read-only. Raises
    RecordError for a missing or damaged one."""
    import shutil

    from .records import PARTIAL_PREFIX, freeze

    for run_id in run_ids:
        final = store.root / run_id
        if final.exists():
            continue
        src = (outputs / "runs" / run_id) if outputs else None
        if src is None or not (src / "record.json").is_file():
            raise RecordError(f"run {run_id}: the unit reported it, but its record did not come back", hint="Its job's log says why; `hubkit eval` again reruns the unit.")
        store.root.mkdir(parents=True, exist_ok=True)
        tmp = store.root / f"{PARTIAL_PREFIX}{run_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        load_record(tmp, full_check=True)  # sealed where it ran: every byte checked here
        os.rename(tmp, final)
        freeze(final)


def _load(matrix) -> dict:
    from ..scaleout import ScaleoutError

    try:
        return matrix.load()
    except ScaleoutError:
        return {}


def _done_records(matrix, status, store: RunStore) -> dict[str, Any]:
    """{subject: record} that a unit the matrix records as done wrote, when those records are
    there and ok: its work counts as done even when this machine computes other cache keys
    (another device's default dtype, another lm-eval install path)."""
    if status is None or status.state != "done":
        return {}
    try:
        value = matrix.result(status.unit_id)
    except HubkitError:
        return {}
    out = {}
    for subject, run_id in (value or {}).items() if isinstance(value, dict) else []:
        try:
            record = load_record(store.root / run_id)
        except (HubkitError, RecordError):
            continue
        if record.ok:
            out[subject] = record
    return out


def _unit_failure(status) -> str:
    from ..scaleout.units import error_summary

    where = status.logs.get("stderr") or status.logs.get("stdout")
    text = error_summary(status.error) or "ended without a result"
    return f"{status.state}: {text}" + (f" (log: {where})" if where else "")


# -- executors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _UnitResources:
    gpus: int
    cpus: int
    mem_gb: float | None
    time_min: int

    def scaleout(self):
        from ..scaleout import Resources

        return Resources(cpus=self.cpus, gpus=self.gpus, mem_gb=self.mem_gb, time_min=self.time_min)


def _visible_gpus() -> list[str]:
    from ..scaleout import visible_gpus

    return visible_gpus()


def _resources(settings, setup, kind: str, visible: list[str], given: dict | None = None) -> _UnitResources:
    """A setup's unit resources: its own `resources`, else the scaleout section's, then what
    was given on the command line. GPUs default to one per unit locally when some are visible."""
    r = (setup.resources or settings.resources).model_dump()
    r.update({k: v for k, v in (given or {}).items() if v is not None})
    gpus = r["gpus"]
    if gpus is None:
        gpus = 1 if (kind == "local" and visible) else 0
    return _UnitResources(gpus=gpus, cpus=r["cpus"], mem_gb=r["mem_gb"], time_min=r["time_min"])


def _executor(kind, settings, runs_dir: Path, visible, cells, resources_of, overrides, endpoint, token, manifest, say):
    from ..scaleout import InlineExecutor, LocalExecutor, ScaleoutError

    folder = runs_dir / ".scaleout"
    if kind == "local":
        need = max((r.gpus for r in resources_of.values()), default=0)
        if need > len(visible):
            raise ScaleoutError(
                f"a unit needs {need} GPU(s) but {len(visible)} are visible ({', '.join(visible) or 'none'})",
                hint="Lower scaleout.resources.gpus (or --gpus), or set CUDA_VISIBLE_DEVICES.",
            )
        if need and len(visible) >= 2 * need and len(cells) > 1:
            say(f"   {len(cells)} units on {len(visible)} GPU(s) ({need} each): {', '.join(visible)}")
            return LocalExecutor(folder / "local", gpus=visible)
        return InlineExecutor()
    if kind == "slurm":
        from ..scaleout import SlurmExecutor

        s = settings.slurm
        return SlurmExecutor(
            folder / "slurm", partition=s.partition, account=s.account, qos=s.qos, setup=s.setup,
            sbatch={k: v for k, v in s.sbatch.items()}, max_parallel=s.max_parallel, job_name="hubkit-eval",
            poll_interval=overrides.get("poll_interval") or 10.0,
        )  # fmt: skip
    from ..scaleout.hfjobs import HfJobsExecutor
    from .bundle import bundle_for

    h = settings.hf_jobs
    return HfJobsExecutor(
        folder / "hf-jobs", endpoint=endpoint, token=token, namespace=h.namespace, repo_id=h.repo, flavor=h.flavor,
        image=h.image, requirement=h.requirement, timeout=h.timeout, launcher=overrides.get("hf_jobs_launcher") or "uv",
        python=overrides.get("hf_jobs_python") or "python",
        stage=functools.partial(bundle_for, manifest), poll_interval=overrides.get("poll_interval") or 10.0,
    )  # fmt: skip


# -- the live view ------------------------------------------------------------------------------------


class LiveView:
    """Shows the matrix while it runs: redrawn in place on a terminal, one line per change
    otherwise (logs, CI)."""

    def __init__(self, say: Say, *, quiet: bool = False):
        self.say, self.quiet = say, quiet
        self.tty = sys.stderr.isatty()
        self._seen: dict[str, tuple] = {}
        self._lines = 0

    def update(self, statuses) -> None:
        if self.quiet:
            return
        if self.tty and len(statuses) > 1:
            from ..scaleout import render_view

            text = render_view(statuses)
            if self._lines:
                sys.stderr.write(f"\033[{self._lines}F\033[J")
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self._lines = text.count("\n") + 1
            return
        from ..scaleout import format_duration

        for uid, s in statuses.items():
            key = (s.state, s.job_id)
            if self._seen.get(uid) == key:
                continue
            self._seen[uid] = key
            took = ""
            if s.terminal and s.started_at and s.ended_at:
                took = f" in {format_duration(s.ended_at - s.started_at)}"
            job = f" (job {s.job_id})" if s.job_id and s.executor != "inline" else ""
            self.say(f"   unit {uid}: {s.state}{job}{took}")

    def close(self, statuses) -> None:
        if self.tty and self._lines and not self.quiet:
            self._lines = 0


def matrix_status(runs_dir: Path) -> dict:
    """What `hubkit runs status` shows: the matrix file, when it was last updated, and each
    unit's status (as the last `hubkit eval` watching it saw it)."""
    from ..scaleout import Matrix

    matrix = Matrix(Path(runs_dir) / MATRIX_FILE)
    statuses = matrix.load()
    updated = None
    if matrix.path.is_file():
        try:
            updated = json.loads(matrix.path.read_text()).get("updated_at")
        except (OSError, ValueError):
            updated = None
    return {"path": str(matrix.path), "updated_at": updated, "units": statuses}


def format_status(status: dict, now: float | None = None) -> str:
    """The text of `hubkit runs status`."""
    from ..scaleout import format_duration, render_view

    now = time.time() if now is None else now
    if not status["units"]:
        return f"no units recorded in {status['path']} (`hubkit eval` records them)"
    head = f"matrix {status['path']}"
    if status["updated_at"]:
        head += f", updated {format_duration(now - status['updated_at'])} ago"
    text = head + "\n" + render_view(status["units"], now=now)
    if any(not s.terminal for s in status["units"].values()):
        text += "\n(units shown queued or running are followed by the `hubkit eval` that started them; if it is gone, `hubkit eval` again resumes watching them)"
    return text


__all__ = ["EvalUnit", "LiveView", "effective_settings", "format_status", "matrix_status", "run_eval_unit", "run_matrix", "shards"]

