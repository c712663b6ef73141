"""Run records (`runs/<run-id>/`): lm-eval's own files untouched, plus hubkit's provenance.

A record is written under a temporary name and renamed when complete, then made read-only:
records are immutable, and a crash never leaves one that looks finished.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROVENANCE = "provenance.json"
RECORD_FORMAT = 1


@dataclass
class RunRecord:
    path: Path
    provenance: dict

    @property
    def run_id(self) -> str:
        return self.provenance["run_id"]

    @property
    def results_files(self) -> list[Path]:
        return [self.path / p for p in self.provenance.get("results_files", [])]

    def samples_file(self, task: str) -> Path | None:
        rel = self.provenance.get("samples_files", {}).get(task)
        return self.path / rel if rel else None

    def results(self) -> dict:
        """lm-eval's results JSON (the last one, if several)."""
        files = self.results_files
        if not files:
            return {}
        return json.loads(files[-1].read_text())


def load_record(path: str | Path) -> RunRecord:
    path = Path(path)
    return RunRecord(path, json.loads((path / PROVENANCE).read_text()))


def list_records(runs_dir: str | Path) -> list[RunRecord]:
    """Completed records under `runs_dir`, oldest first (partial ones are skipped)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    records = []
    for child in sorted(runs_dir.iterdir()):
        if child.name.startswith(".") or not (child / PROVENANCE).is_file():
            continue
        try:
            records.append(load_record(child))
        except (json.JSONDecodeError, OSError):
            continue
    records.sort(key=lambda r: (r.provenance.get("started_at", ""), r.run_id))
    return records


def resolve_record(runs_dir: str | Path, ref: str) -> RunRecord:
    """A record by path, run id, or a unique prefix of a run id under `runs_dir`."""
    from ..errors import EvalError

    p = Path(ref)
    if (p / PROVENANCE).is_file():
        return load_record(p)
    records = list_records(runs_dir)
    exact = [r for r in records if r.run_id == ref]
    matches = exact or [r for r in records if r.run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise EvalError(f"no run record {ref!r} in {runs_dir}", hint="`hubkit runs` lists the recorded runs.")
    raise EvalError(f"{ref!r} matches {len(matches)} runs in {runs_dir}", hint="Give more of the run id: " + ", ".join(r.run_id for r in matches[:5]))


def find_cached(runs_dir: str | Path, cache_key: str) -> RunRecord | None:
    for record in reversed(list_records(runs_dir)):
        if record.provenance.get("cache_key") == cache_key and record.provenance.get("status") == "ok":
            return record
    return None


def freeze(path: Path) -> None:
    """Make a finished record read-only (files and folders)."""
    for root, dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    for root, dirs, _ in os.walk(path, topdown=False):
        for name in dirs:
            p = Path(root) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# -- lm-eval results, normalized ---------------------------------------------------------------


def _number(value: Any) -> float | None:
    """lm-eval writes numbers, strings of numbers, or "N/A" depending on the version."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def normalize_results(results: dict, **extra: Any) -> list[dict]:
    """Rows (task, metric, filter, value, stderr, n, num_fewshot, version, higher_is_better,
    local_data) from an lm-eval results JSON of any version 0.4.5 through 0.4.13. `extra` is added
    to each row. Tasks hubkit pointed at local data are reported under their original name.
    """
    from .taskdata import from_lm_eval_name

    rows = []
    n_shot = results.get("n-shot", {}) or {}
    n_samples = results.get("n-samples", {}) or {}
    versions = results.get("versions", {}) or {}
    higher = results.get("higher_is_better", {}) or {}
    groups = set((results.get("groups") or {}).keys())
    for task, metrics in (results.get("results") or {}).items():
        if task in groups:
            continue
        for key, value in metrics.items():
            if key == "alias" or "_stderr," in key or "," not in key:
                continue
            metric, filt = key.split(",", 1)
            n = n_samples.get(task, {})
            rows.append(
                {
                    "task": from_lm_eval_name(task),
                    "metric": metric,
                    "filter": filt,
                    "value": _number(value),
                    "stderr": _number(metrics.get(f"{metric}_stderr,{filt}")),
                    "n": _number(n.get("effective")) if isinstance(n, dict) else None,
                    "num_fewshot": _number(n_shot.get(task)),
                    "version": versions.get(task),
                    "higher_is_better": (higher.get(task) or {}).get(metric),
                    "local_data": from_lm_eval_name(task) != task,
                    **extra,
                }
            )
    return rows


RESULT_COLUMNS = ["run_id", "setup", "subject", "strategy", "task", "metric", "filter", "value", "stderr", "n", "num_fewshot", "version", "higher_is_better", "local_data"]


def results_rows(records: list[RunRecord]) -> list[dict]:
    """A row per (run, task, metric) over many records (plain dicts: no pandas needed)."""
    rows = []
    for rec in records:
        p = rec.provenance
        if p.get("status") != "ok":
            continue
        rows += normalize_results(rec.results(), run_id=rec.run_id, subject=p.get("subject"), setup=p.get("setup"), strategy=p.get("strategy"))
    return [{c: r.get(c) for c in RESULT_COLUMNS} for r in rows]


def results_table(records: list[RunRecord]):
    """results_rows as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(results_rows(records), columns=RESULT_COLUMNS)


def read_samples(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
