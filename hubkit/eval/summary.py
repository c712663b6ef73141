"""The table users read after an eval: reproduced numbers next to claimed ones, with a verdict."""

from __future__ import annotations

import math

from ..manifest import Manifest
from .records import RunRecord, results_rows

# A reproduced number "agrees" with a claim when they are within K combined standard errors.
AGREE_K = 2.0


def verdict(value: float | None, stderr: float | None, claimed: float | None, claimed_stderr: float | None) -> str:
    if value is None or claimed is None:
        return ""
    ses = [s for s in (stderr, claimed_stderr) if s]
    if not ses:
        return "agrees" if math.isclose(value, claimed, abs_tol=5e-5) else "differs (no stderr)"
    se = math.sqrt(sum(s * s for s in ses))
    z = abs(value - claimed) / se
    return f"agrees ({z:.1f}σ)" if z <= AGREE_K else f"differs ({z:.1f}σ)"


SUMMARY_COLUMNS = ["subject", "task", "data", "metric", "value", "stderr", "claimed", "claimed_stderr", "verdict", "strategy", "run_id"]


def summary_rows(manifest: Manifest, records: list[RunRecord], metrics: list[str] | None = None) -> list[dict]:
    """subject, task, data (hub|local), metric, value, stderr, strategy, run, and claimed/verdict
    where the manifest declares a claim for that subject, task and metric."""
    claims = {(c.subject, c.task, c.metric): c for c in manifest.claims if not isinstance(c.value, (bool, str))}
    rows = []
    for r in results_rows(records):
        if metrics and r["metric"] not in metrics:
            continue
        c = claims.get((r["subject"], r["task"], r["metric"]))
        rows.append(
            {
                **{k: r[k] for k in ("subject", "task", "metric", "value", "stderr", "strategy", "run_id")},
                "data": "local" if r["local_data"] else "hub",
                "claimed": float(c.value) if c else None,
                "claimed_stderr": c.stderr if c else None,
                "verdict": verdict(r["value"], r["stderr"], float(c.value), c.stderr) if c else "",
            }
        )
    return [{k: row[k] for k in SUMMARY_COLUMNS} for row in rows]


def summarize(manifest: Manifest, records: list[RunRecord], metrics: list[str] | None = None):
    """summary_rows as a pandas DataFrame (what the CLI prints)."""
    import pandas as pd

    return pd.DataFrame(summary_rows(manifest, records, metrics), columns=SUMMARY_COLUMNS)


def format_summary(df) -> str:
    """The summary as aligned text (numbers to 4 places, blanks for missing)."""
    if df.empty:
        return "(no results)"
    shown = df.copy()
    for col in ("value", "stderr", "claimed", "claimed_stderr"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: "" if v is None or v != v else f"{v:.4f}")
    if "claimed" in shown and not shown["claimed"].astype(bool).any():
        shown = shown.drop(columns=["claimed", "claimed_stderr", "verdict"])
    return shown.to_string(index=False)
