"""`hubkit runs import`: an lm-eval results file made elsewhere becomes an (imported) run record.

lm-eval run by hand, on a cluster, or last year: its results JSON (any version since 0.3) is
copied into a sealed record with the provenance the file carries about itself (versions, model
args, git hash, date), marked `imported` wherever it is shown. Nothing is recomputed or guessed:
the numbers are the file's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path

from .. import __version__
from ..errors import EvalError
from .records import ImportedFrom, RunRecord, RunStore, now
from .results import file_facts, parse_results

_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+?)_\d{4}-\d{2}-\d{2}T[\d\-.:]+\.jsonl$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


def _date(value) -> str | None:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).isoformat(timespec="seconds")
    if isinstance(value, str) and value:
        return value
    return None


def _samples(paths: list[Path]) -> list[tuple[str, Path]]:
    """(task, file) for each samples JSONL given (files, or folders holding lm-eval's samples_*)."""
    out = []
    for p in paths:
        files = sorted(p.rglob("samples_*.jsonl")) if p.is_dir() else [p]
        for f in files:
            if not f.is_file():
                raise EvalError(f"--samples {f}: no such file")
            m = _SAMPLES_NAME.match(f.name)
            if not m:
                raise EvalError(f"--samples {f}: not named like lm-eval's samples files (samples_<task>_<date>.jsonl)")
            out.append((m["task"], f))
    return out


def import_results(store: RunStore, results_file: str | Path, *, subject: str, setup: str, samples: list[str | Path] = ()) -> RunRecord:
    """Record `results_file` as an imported run of `subject` under eval setup `setup`.

    Returns the sealed record. Raises EvalError when the file is not an lm-eval results file or
    a name is not usable."""
    path = Path(results_file)
    for label, value in (("--subject", subject), ("--setup", setup)):
        if not _NAME.match(value):
            raise EvalError(f"{label} {value!r}: use letters, digits, '.', '_' and '-' (it names the run)")
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise EvalError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise EvalError(f"{path}: not JSON ({exc})") from None
    try:
        rows = parse_results(data)
    except ValueError as exc:
        raise EvalError(f"{path}: {exc}", hint="Give the results_*.json that lm-eval writes (not a samples file).") from None
    if not rows:
        raise EvalError(f"{path}: the file has no metrics in it")
    facts = file_facts(data)
    sample_files = _samples([Path(s) for s in samples])
    sha = hashlib.sha256(raw).hexdigest()
    stamp = now().replace("-", "").replace(":", "")[:15]
    run_id = f"{stamp}-{setup}-{subject}-imported-{sha[:8]}"
    tmp = store.start(run_id)
    (tmp / "imported").mkdir()
    shutil.copyfile(path, tmp / "imported" / path.name)
    samples_rel = {}
    for task, f in sample_files:
        shutil.copyfile(f, tmp / "imported" / f.name)
        samples_rel[task] = f"imported/{f.name}"
    shots = {r.num_fewshot for r in rows if not r.is_group}
    record = RunRecord(
        hubkit_version=__version__,
        run_id=run_id,
        status="ok",
        origin="imported",
        setup=setup,
        subject=subject,
        artifact=None,
        lm_eval_version=facts["lm_eval_version"],
        num_fewshot=shots.pop() if len(shots) == 1 else None,
        limit=facts.get("limit"),
        started_at=_date(data.get("date")) or now(),
        finished_at=_date(data.get("date")),
        results_files=[f"imported/{path.name}"],
        samples_files=samples_rel,
        rows=rows,
        imported=ImportedFrom(file=path.name, sha256=sha, samples=[f.name for _, f in sample_files], facts=facts),
        env={"kind": "imported", "installed": {k: v for k, v in (("lm_eval", facts["lm_eval_version"]), ("transformers", facts.get("transformers_version"))) if v}},
    )
    return store.commit(tmp, record)
