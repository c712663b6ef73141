"""The lineage section: a stage table, per-stage settings and a mermaid graph."""

from __future__ import annotations

from ..manifest import Manifest
from .numbers import fmt
from .tables import Table


def lineage_view(manifest: Manifest, artifact_name: str | None) -> dict:
    stages = manifest.lineage
    if not stages:
        return {"table": None, "details": None, "mermaid": None, "descriptions": []}
    hyper_keys = list(dict.fromkeys(k for s in stages for k in s.hyperparameters))
    metric_keys = list(dict.fromkeys(k for s in stages for k in s.metrics))
    # A few shared settings read best as columns (one row per stage); many read best as a
    # setting/value list per stage.
    wide = len(hyper_keys) + len(metric_keys) <= 8
    rows, details = [], []
    for i, s in enumerate(stages, 1):
        this = s.artifact is not None and s.artifact == artifact_name
        name = f"**{s.name}** (this model)" if this else s.name
        data = ", ".join(manifest.datasets[d].title or d for d in s.data if d in manifest.datasets)
        row = [str(i), name, s.method or "", s.model or "", data]
        if wide:
            row += [fmt(s.hyperparameters.get(k)) for k in hyper_keys] + [fmt(s.metrics.get(k)) for k in metric_keys]
        elif s.hyperparameters or s.metrics:
            details.append((s.name, [[k, fmt(v)] for k, v in {**s.hyperparameters, **s.metrics}.items()]))
        rows.append(row)
    lines = ["graph TD"]
    ids = {s.name: f"s{i}" for i, s in enumerate(stages)}
    for s in stages:
        label = s.name + (f"<br/>{s.model}" if s.model else "") + (f"<br/><i>{s.method}</i>" if s.method and s.method != s.name else "")
        lines.append(f'  {ids[s.name]}["{label.replace(chr(34), "")}"]')
    for s in stages:
        if s.parent and s.parent in ids:
            lines.append(f"  {ids[s.parent]} --> {ids[s.name]}")
    for s in stages:
        if s.artifact is not None and s.artifact == artifact_name:
            lines.append(f"  style {ids[s.name]} stroke-width:3px")
    header = ["#", "stage", "method", "model", "data"] + ((hyper_keys + metric_keys) if wide else [])
    descriptions = [(s.name, s.description) for s in stages if s.description]
    detail_table = Table("Stage settings", ["stage", "setting", "value"], [[st if j == 0 else "", k, v] for st, kv in details for j, (k, v) in enumerate(kv)])
    return {"table": Table("Lineage", header, rows), "details": detail_table, "mermaid": "\n".join(lines), "descriptions": descriptions}
