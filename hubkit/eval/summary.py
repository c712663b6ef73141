"""The table users read after an eval: reproduced numbers next to claimed ones, with a verdict."""

from __future__ import annotations

from ..manifest import Manifest
from .claims import AGREE_K, claim_number, join, verdict  # noqa: F401 (re-exported)
from .records import RunRecord

SUMMARY_COLUMNS = ["subject", "setup", "task", "shots", "data", "metric", "value", "stderr", "claimed", "claimed_stderr", "verdict", "strategy", "run_id"]


def summary_rows(manifest: Manifest, records: list[RunRecord], metrics: list[str] | None = None) -> list[dict]:
    """A row per reproduced (or imported) number the setup asks for: subject, setup, task (a
    group's subtasks marked '- '), few-shot, data (hub|local), metric (with its filter),
    value, stderr, strategy (or 'imported'), run, and the claim and verdict from the one join."""
    from .claims import metric_selected

    cells, _ = join(manifest, records)
    rows = []
    for c in cells:
        if c.row is None:
            continue
        if metrics and not metric_selected(c.row, metrics):
            continue
        claim = c.claim
        rows.append(
            {
                "subject": c.subject,
                "setup": c.setup,
                "task": ("- " if c.row.group and not c.row.is_group else "") + c.task,
                "shots": c.num_fewshot,
                "data": "local" if c.row.local_data else "hub",
                "metric": c.metric_label,
                "value": c.row.value,
                "stderr": c.row.stderr,
                "claimed": claim_number(claim) if claim else None,
                "claimed_stderr": claim.stderr if claim else None,
                "verdict": c.verdict or ("" if c.row.value is not None else f"unavailable: {c.row.unavailable}"),
                "strategy": "imported" if c.origin == "imported" else c.record.strategy,
                "run_id": c.record.run_id,
            }
        )
    return rows


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
    shown["shots"] = shown["shots"].map(lambda v: "" if v is None or v != v else str(int(v)))
    if "claimed" in shown and not shown["claimed"].astype(bool).any():
        shown = shown.drop(columns=["claimed", "claimed_stderr"])
    if not shown["verdict"].astype(bool).any():
        shown = shown.drop(columns=["verdict"])
    if shown["setup"].nunique() <= 1:
        shown = shown.drop(columns=["setup"])
    return shown.to_string(index=False)
