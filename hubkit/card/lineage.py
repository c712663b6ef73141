"""The lineage section: a stage table, per-stage settings and a mermaid graph."""

from __future__ import annotations

from ..manifest import Manifest
from .numbers import fmt
from .tables import Table


def lineage_view(manifest: Manifest, artifact_name: str | None) -> dict:
    stages = manifest.lineage
    if not stages:
        return {"table": None, "details": None, "graph": None, "descriptions": []}
    hyper_keys = list(dict.fromkeys(k for s in stages for k in s.hyperparameters))
    metric_keys = list(dict.fromkeys(k for s in stages for k in s.metrics))
    # A few shared settings read best as columns (one row per stage); many read best as a
    # setting/value list per stage.
    wide = len(hyper_keys) + len(metric_keys) <= 8
    has_teacher = any(s.teacher for s in stages)
    has_data_from = any(s.data_from for s in stages)
    rows, details = [], []
    for i, s in enumerate(stages, 1):
        this = s.artifact is not None and s.artifact == artifact_name
        name = f"**{s.name}** (this model)" if this else s.name
        data = ", ".join(manifest.datasets[d].title or d for d in s.data if d in manifest.datasets)
        row = [str(i), name, s.method or "", s.model or "", data] + ([s.teacher or ""] if has_teacher else []) + ([s.data_from or ""] if has_data_from else [])
        if wide:
            row += [fmt(s.hyperparameters.get(k)) for k in hyper_keys] + [fmt(s.metrics.get(k)) for k in metric_keys]
        elif s.hyperparameters or s.metrics:
            details.append((s.name, [[k, fmt(v)] for k, v in {**s.hyperparameters, **s.metrics}.items()]))
        rows.append(row)
    ids = {s.name: f"s{i}" for i, s in enumerate(stages)}
    nodes = []
    for s in stages:
        label = s.name + (f"<br/>{s.model}" if s.model else "") + (f"<br/><i>{s.method}</i>" if s.method and s.method != s.name else "")
        nodes.append({"id": ids[s.name], "label": label.replace(chr(34), ""), "this": s.artifact is not None and s.artifact == artifact_name})
    edges = [{"from": ids[s.parent], "to": ids[s.name], "label": None} for s in stages if s.parent and s.parent in ids]
    extra = 0
    for s in stages:
        for ref, label in ((s.teacher, "teacher"), (s.data_from, "generated data")):
            if not ref:
                continue
            if ref not in ids:  # a model outside the lineage: a node of its own
                ids[ref] = f"x{extra}"
                extra += 1
                nodes.append({"id": ids[ref], "label": ref.replace(chr(34), ""), "this": False})
            edges.append({"from": ids[ref], "to": ids[s.name], "label": label})
    header = ["#", "stage", "method", "model", "data"] + (["teacher"] if has_teacher else []) + (["data from"] if has_data_from else []) + ((hyper_keys + metric_keys) if wide else [])
    descriptions = [(s.name, s.description) for s in stages if s.description]
    detail_table = Table("Stage settings", ["stage", "setting", "value"], [[st if j == 0 else "", k, v] for st, kv in details for j, (k, v) in enumerate(kv)])
    return {"table": Table("Lineage", header, rows), "details": detail_table, "graph": {"nodes": nodes, "edges": edges}, "descriptions": descriptions}
