"""The table users read after an eval: reproduced numbers next to claimed ones, with a verdict."""

from __future__ import annotations

import math

from ..manifest import Manifest
from .records import RunRecord, results_table

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


def summarize(manifest: Manifest, records: list[RunRecord], metrics: list[str] | None = None):
    """A DataFrame: subject, task, metric, value, stderr, strategy, run, and claimed/verdict columns
    where the manifest declares a claim for that subject, task and metric."""
    df = results_table(records)
    if df.empty:
        return df
    if metrics:
        df = df[df["metric"].isin(metrics)]
    claims = {(c.subject, c.task, c.metric): c for c in manifest.claims if not isinstance(c.value, (bool, str))}
    claimed, claimed_se, verdicts = [], [], []
    for row in df.itertuples():
        c = claims.get((row.subject, row.task, row.metric))
        claimed.append(float(c.value) if c else None)
        claimed_se.append(c.stderr if c else None)
        verdicts.append(verdict(row.value, row.stderr, float(c.value), c.stderr) if c else "")
    df = df.assign(claimed=claimed, claimed_stderr=claimed_se, verdict=verdicts, data=["local" if x else "hub" for x in df["local_data"]])
    return df[["subject", "task", "data", "metric", "value", "stderr", "claimed", "claimed_stderr", "verdict", "strategy", "run_id"]].reset_index(drop=True)


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
