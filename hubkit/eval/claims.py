"""The one join of claimed numbers with reproduced (or imported) result rows.

The eval summary, the cards, the Space's results tab and `hubkit verify` all show "what was
claimed, what was reproduced, do they agree"; they all read it from `join`, so they cannot
disagree. A claim matches a row when subject, task and metric agree, and filter, few-shot and
setup agree wherever the claim states them. A claim that could match several rows (ARC at 0 and
at 25 shots, with no `num_fewshot` on the claim) matches none of them and is reported as
ambiguous rather than paired with a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..manifest import Claim, Manifest
from .records import RunRecord
from .results import ResultRow

# A reproduced number "agrees" with a claim when they are within K combined standard errors.
AGREE_K = 2.0


def split_metric(name: str) -> tuple[str, str | None]:
    """'exact_match,strict-match' -> ('exact_match', 'strict-match'); 'acc' -> ('acc', None)."""
    metric, _, filt = name.partition(",")
    return metric, (filt or None)


def metric_selected(row: ResultRow, wanted: list[str] | None) -> bool:
    """Whether a setup's `metrics` list asks for this row (a bare name takes every filter)."""
    if not wanted:
        return True
    for w in wanted:
        metric, filt = split_metric(w)
        if metric == row.metric and (filt is None or filt == row.filter):
            return True
    return False


def verdict(value: float | None, stderr: float | None, claimed: float | None, claimed_stderr: float | None) -> str:
    """'agrees (0.4σ)' / 'differs (3.1σ)' within AGREE_K combined standard errors; without any
    stderr, agreement to 4 decimals."""
    if value is None or claimed is None:
        return ""
    ses = [s for s in (stderr, claimed_stderr) if s]
    if not ses:
        return "agrees" if math.isclose(value, claimed, abs_tol=5e-5) else "differs (no stderr)"
    se = math.sqrt(sum(s * s for s in ses))
    z = abs(value - claimed) / se
    return f"agrees ({z:.1f}σ)" if z <= AGREE_K else f"differs ({z:.1f}σ)"


def claim_number(claim: Claim) -> float | None:
    if isinstance(claim.value, bool) or not isinstance(claim.value, (int, float)):
        return None
    return float(claim.value)


@dataclass
class Cell:
    """One number for one subject: a result row (with its record) and/or a claim."""

    subject: str
    task: str
    metric: str
    filter: str = "none"
    num_fewshot: int | None = None
    setup: str | None = None
    row: ResultRow | None = None
    record: RunRecord | None = None
    claim: Claim | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """reproduced | imported | claimed"""
        if self.row is None:
            return "claimed"
        return "imported" if self.record is not None and self.record.origin == "imported" else "reproduced"

    @property
    def value(self):
        return self.row.value if self.row is not None else (self.claim.value if self.claim else None)

    @property
    def stderr(self) -> float | None:
        return self.row.stderr if self.row is not None else (self.claim.stderr if self.claim else None)

    @property
    def metric_label(self) -> str:
        return self.metric if self.filter in ("none", "", None) else f"{self.metric} ({self.filter})"

    @property
    def verdict(self) -> str:
        if self.row is None or self.claim is None or self.claim.reference_only:
            return ""
        return verdict(self.row.value, self.row.stderr, claim_number(self.claim), self.claim.stderr)


def _claim_filter(claim: Claim) -> tuple[str, str | None]:
    return split_metric(claim.metric)


def claim_matches(claim: Claim, cell: Cell) -> bool:
    metric, filt = _claim_filter(claim)
    if (claim.subject, claim.task, metric) != (cell.subject, cell.task, cell.metric):
        return False
    if filt is not None and filt != cell.filter:
        return False
    if claim.num_fewshot is not None and claim.num_fewshot != cell.num_fewshot:
        return False
    if claim.setup is not None and claim.setup != cell.setup:
        return False
    return True


def join(manifest: Manifest, records: list[RunRecord], *, all_metrics: bool = False) -> tuple[list[Cell], list[str]]:
    """(cells, warnings): a cell per result row of `records` whose metric the setup asks for
    (every metric with `all_metrics`), each with the claim that matches it, then a cell per claim
    that matched no row. Warnings name ambiguous claims."""
    cells: list[Cell] = []
    for rec in records:
        if not rec.ok:
            continue
        setup = manifest.evals.get(rec.setup)
        wanted = None if all_metrics or setup is None else list(setup.metrics)
        for row in rec.rows:
            if row.task in rec.shadowed or not metric_selected(row, wanted):
                continue
            cells.append(Cell(rec.subject, row.task, row.metric, row.filter, row.num_fewshot, rec.setup, row, rec))
    warnings: list[str] = []
    unmatched: list[Claim] = []
    for i, claim in enumerate(manifest.claims):
        hits = [c for c in cells if claim_matches(claim, c)]
        # a bare metric name means the unfiltered value when the task has one
        if len(hits) > 1 and _claim_filter(claim)[1] is None:
            plain = [c for c in hits if c.filter == "none"]
            hits = plain or hits
        if len(hits) == 1 and hits[0].claim is None:
            hits[0].claim = claim
        elif len(hits) > 1:
            shots = sorted({str(c.num_fewshot) for c in hits})
            filters = sorted({c.filter for c in hits})
            warnings.append(
                f"claims.{i} ({claim.subject}, {claim.task}, {claim.metric}) matches {len(hits)} results"
                f" (few-shot {', '.join(shots)}; filters {', '.join(filters)}): set num_fewshot, setup or metric,filter on the claim"
            )
            unmatched.append(claim)
        else:
            unmatched.append(claim)
    for claim in unmatched:
        metric, filt = _claim_filter(claim)
        cells.append(Cell(claim.subject, claim.task, metric, filt or "none", claim.num_fewshot, claim.setup, claim=claim))
    return cells, warnings
