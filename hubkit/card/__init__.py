"""`hubkit card`: model cards rendered from the manifest and the run records.

Every number on a card comes from a recorded run (`runs/`, read through the run store) or a
declared claim (`claims:`), joined in one place (`hubkit.eval.claims.join`). Numbers are
formatted in Python (`tables`), tables are drawn by Jinja macros, and the front matter is built
with huggingface_hub's card classes (`metadata`). `lint` is `hubkit card --check`.

Templates live in `templates/card/`: one per artifact kind, made of small partials
(`card/_*.md.j2`) and macros (`card/_macros.md.j2`). A user's template directory is searched
first, so overriding one partial needs only that file.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import CardError
from ..eval.claims import Cell, join
from ..eval.records import RunRecord, RunStore
from ..hub.rules import HUB_LICENSES  # noqa: F401 (re-exported)
from ..manifest import Artifact, Manifest
from ..portable import portable_command
from .lineage import lineage_view
from .lint import INPUTS_MARK, RESULTS_BEGIN, RESULTS_END, check_card, looks_local
from .metadata import front_matter, model_index_results
from .numbers import fmt
from .quantized import quantized_view
from .specs import artifact_facts, specs_rows
from .tables import Headline, Table, report_tables, results_tables

CARD_TEMPLATES = {
    "adapter": "card/adapter.md.j2",
    "merged": "card/merged.md.j2",
    "full": "card/merged.md.j2",
    "quantized": "card/quantized.md.j2",
    "report": "card/report.md.j2",
}
REPORT_NAME = "report"

__all__ = ["Card", "CARD_TEMPLATES", "HUB_LICENSES", "build_context", "card_dir", "check_card", "hub_base_model", "render_card", "render_cards", "write_cards"]


@dataclass
class Card:
    name: str  # artifact name, or "report"
    kind: str
    text: str
    metadata: dict
    inputs_digest: str
    numbers: set[str]
    chart: bytes | None = None
    headlines: list[Headline] = field(default_factory=list)
    records: list[RunRecord] = field(default_factory=list)  # the runs behind its numbers
    record_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # records in the runs folder that failed their checks

    @property
    def run_ids(self) -> set[str]:
        return {r.run_id for r in self.records}


def hub_base_model(manifest: Manifest, art: Artifact | None, facts: dict | None) -> str | None:
    """The Hub id of the artifact's parent: `base_model` in the manifest, or for an adapter the
    base its adapter_config.json names when that is a Hub id (not a local folder)."""
    if art is None:
        return None
    if art.base_model:
        return art.base_model
    named = (facts or {}).get("base_model") if art.kind == "adapter" else None
    return named if named and not looks_local(str(named), manifest.root) else None


def _inputs_digest(manifest: Manifest, records: list[RunRecord], template_dir: str | None) -> str:
    h = hashlib.sha256()
    if manifest._source is not None and Path(manifest._source).is_file():
        h.update(Path(manifest._source).read_bytes())
    else:
        h.update(manifest.model_dump_json().encode())
    for rec in sorted(records, key=lambda r: r.run_id):
        h.update(rec.run_id.encode())
        h.update(rec.model_dump_json().encode())
    h.update(__version__.encode())
    if template_dir:
        for f in sorted(Path(template_dir).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(template_dir)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def evaluated_as(manifest: Manifest, name: str) -> str:
    """The subject whose runs are this artifact's: the adapter itself; a merged checkpoint's
    adapter; a full model that is the adapters' base, `base`."""
    art = manifest.artifacts[name]
    if art.kind == "adapter":
        return name
    if art.adapter:
        return art.adapter
    if art.repo_id and any(a.kind == "adapter" and a.base_model == art.repo_id for a in manifest.artifacts.values()):
        return "base"
    return name


def _relevant(manifest: Manifest, name: str | None, store: RunStore) -> list[RunRecord]:
    """The newest records of every setup that evaluated this artifact (all of them for a report)."""
    records = store.latest(strict=False)
    if not name:
        return records
    target = evaluated_as(manifest, name)
    setups = {r.setup for r in records if r.subject == target}
    return [r for r in records if r.setup in setups]


def _labeler(manifest: Manifest, art: Artifact | None, name: str | None, base_model: str | None):
    merged_of = art.adapter if art is not None and art.kind in ("merged", "full") else None
    as_base = art is not None and name is not None and evaluated_as(manifest, name) == "base"

    def label(cell: Cell) -> str:
        s = cell.subject
        if art is not None and (s == name or (as_base and s == "base")):
            return f"**this model** (`{name}`)"
        if merged_of and s == merged_of:
            strategy = cell.record.strategy if cell.record is not None else None
            if strategy == "merged-fp16":
                return f"**this model** (`{s}` merged, as evaluated)"
            repo = manifest.artifacts[s].repo_id
            adapter = f"[{s}](https://huggingface.co/{repo})" if repo else f"`{s}`"
            return f"{adapter} adapter" + (f" ({strategy})" if strategy else "")
        if s == "base":
            return f"base: {base_model}" if base_model else "base model"
        if s in manifest.artifacts:
            repo = manifest.artifacts[s].repo_id
            return f"[{s}](https://huggingface.co/{repo})" if repo else s
        return s

    def is_this(cell: Cell) -> bool:
        if cell.subject == name or (as_base and cell.subject == "base"):
            return True
        return bool(merged_of and cell.subject == merged_of and cell.record is not None and cell.record.strategy == "merged-fp16")

    return label, is_this


def _reproduce_view(manifest: Manifest, name: str | None, records: list[RunRecord]) -> list[dict]:
    """Per setup: the exact lm-eval invocation the recorded run used (or the documented one), its
    pins, and what was installed."""
    out = []
    if name:
        name = evaluated_as(manifest, name)  # a merged checkpoint is evaluated as its adapter
        if name not in manifest.artifacts and name != "base":
            return out
    for setup_name, setup in manifest.evals.items():
        if name == "base" and not setup.include_base:
            continue
        if name and name != "base" and setup.artifacts and name not in setup.artifacts:
            continue
        run = next((r for r in records if r.setup == setup_name and r.subject == name), None)
        env = run.env if run else {}
        out.append(
            {
                "setup": setup_name,
                "tasks": ", ".join(setup.tasks),
                "num_fewshot": setup.num_fewshot,
                "pins": [f"{k}{v}" for k, v in setup.pins.items()],
                "pinned": setup.env == "pinned",
                "strategies": list(setup.strategies),
                "documented": setup.command,
                "hubkit": f"hubkit eval --setup {setup_name}" + (f" --artifact {name}" if name and name != "base" else ""),
                "recorded": portable_command(run.command, manifest.root) if run and run.command else None,
                "run_id": run.run_id if run else None,
                "imported": bool(run and run.origin == "imported"),
                "strategy": run.strategy if run else None,
                "fallback_reason": run.fallback_reason if run else None,
                "installed": sorted(f"{k}=={v}" for k, v in (env.get("installed") or {}).items() if v),
                "hardware": (run.hardware if run and run.hardware else None),
                "local_data": bool(run and run.data_overrides),
            }
        )
    return out


def results_chart(cells: list[Cell]) -> bytes | None:
    """A bar chart (PNG) of reproduced headline numbers when there is more than one run; None
    without matplotlib or with a single run."""
    rep = [c for c in cells if c.row is not None and c.row.value is not None and not (c.row.group and not c.row.is_group)]
    if len({c.record.run_id for c in rep}) < 2:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = list(dict.fromkeys((c.task, c.num_fewshot, c.metric_label) for c in rep))
    subjects = list(dict.fromkeys(c.subject for c in rep))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups) * max(1, len(subjects)) / 2, 3.2), dpi=100)
    width = 0.8 / max(1, len(subjects))
    for j, s in enumerate(subjects):
        xs, ys, es = [], [], []
        for i, g in enumerate(groups):
            c = next((x for x in rep if (x.task, x.num_fewshot, x.metric_label) == g and x.subject == s), None)
            if c:
                xs.append(i + j * width)
                ys.append(c.row.value)
                es.append(c.row.stderr or 0)
        ax.bar(xs, ys, width, yerr=es, label=s, capsize=3)
    ax.set_xticks([i + width * (len(subjects) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{t}" + (f" ({n}-shot)" if n is not None else "") + f"\n{m}" for t, n, m in groups], fontsize=8)
    ax.legend(fontsize=8)
    ax.set_ylabel("score (± stderr)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def build_context(manifest: Manifest, name: str | None, runs_dir: Path, template_dir: str | None = None) -> dict[str, Any]:
    """Everything a card template sees (keys starting with `_` are for hubkit, not templates)."""
    art = manifest.artifacts.get(name) if name else None
    kind = art.kind if art else "report"
    store = RunStore(runs_dir)
    relevant = _relevant(manifest, name, store)
    cells, warnings = join(manifest, relevant)
    facts = artifact_facts(manifest, art) if art else None
    base_model = hub_base_model(manifest, art, facts)
    label, is_this = _labeler(manifest, art, name, base_model)
    if kind == "report":
        tables, headlines = report_tables(cells), []
    else:
        tables, headlines = results_tables(manifest, cells, label)
    evals = model_index_results(headlines, art.repo_id if art else None, is_this) if art else []
    front, metadata = front_matter(manifest, name or REPORT_NAME, art, kind, base_model, evals)
    sibling = manifest.artifacts.get(art.merged) if art and art.merged else None
    source_adapter = manifest.artifacts.get(art.adapter) if art and art.adapter else None
    datasets = [
        {
            "title": d.title or key, "hub_id": d.hub_id, "rows": fmt(d.rows) if d.rows is not None else "", "unit": d.unit,
            "license": d.license or "", "description": d.description, "filters": d.filters,
        }
        for key, d in manifest.datasets.items()
    ]
    sections = []
    for s in manifest.sections:
        if s.body is not None:
            body = s.body
        else:
            path = manifest.resolve(s.file)
            try:
                body = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CardError(f"sections: {s.title!r}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})", hint="Paths are relative to the manifest.") from None
        sections.append({"title": s.title, "body": body.strip()})
    subject_name = name if kind == "adapter" else (art.adapter if art and art.adapter else name)
    origins = {c.origin for c in cells}
    numbers = set().union(*(t.numbers for t in tables)) if tables else set()
    record_problems = [p for p in store.problems]
    record_problems += [f"run {r.run_id} has no seal (made by hubkit 0.1): its files cannot be checked; rerun it with `hubkit eval --rerun`" for r in relevant if not r.sealed]
    return {
        "hubkit_version": __version__,
        "front_matter": front,
        "metadata": metadata,
        "project": manifest.project,
        "name": name or REPORT_NAME,
        "kind": kind,
        "artifact": art,
        "base_model": base_model,
        "title": (art.title if art and art.title else manifest.project.name),
        "summary": (art.summary if art and art.summary else manifest.project.summary),
        "sibling": sibling,
        "source_adapter": source_adapter,
        "facts": facts,
        "specs": specs_rows(facts) if facts else [],
        "quantized": quantized_view(manifest, name, art, facts, runs_dir, template_dir),
        "results": tables,
        "origins": sorted(origins),
        "has_verdicts": any(c.verdict for c in cells),
        "results_begin": RESULTS_BEGIN,
        "results_end": RESULTS_END,
        "chart": None,
        "lineage": lineage_view(manifest, subject_name),
        "datasets": datasets,
        "training": {k: fmt(v) for k, v in (art.training.items() if art else [])},
        "training_metrics": {k: fmt(v) for k, v in (art.training_metrics.items() if art else [])},
        "reproduce": _reproduce_view(manifest, name, relevant),
        "sections": sections,
        "limitations": manifest.project.limitations,
        "citations": manifest.project.citations,
        "inputs_digest": _inputs_digest(manifest, relevant, template_dir),
        "inputs_mark": INPUTS_MARK,
        "_numbers": numbers,
        "_records": relevant,
        "_cells": cells,
        "_headlines": headlines,
        "_warnings": warnings,
        "_record_problems": record_problems,
        "_damaged": list(store.problems),
    }


def render_card(manifest: Manifest, name: str | None = None, *, runs_dir: str | Path | None = None, template_dir: str | Path | None = None) -> Card:
    """Render the card of artifact `name` (or, with no artifacts, the project's report card).

    Raises CardError for an unknown artifact, an unreadable section file or a template error."""
    from ..templating import render_template

    if name is not None and name not in manifest.artifacts:
        raise CardError(f"no artifact named {name!r}", hint=f"Known artifacts: {', '.join(manifest.artifacts) or '(none)'}.")
    runs = Path(runs_dir) if runs_dir else manifest.root / "runs"
    tdir = str(template_dir) if template_dir else None
    ctx = build_context(manifest, name, runs, tdir)
    chart = results_chart(ctx["_cells"]) if ctx["kind"] != "report" else None
    if chart is not None:
        ctx["chart"] = "results.png"
    try:
        text = render_template(CARD_TEMPLATES[ctx["kind"]], tdir, **{k: v for k, v in ctx.items() if not k.startswith("_")})
    except Exception as exc:  # jinja's errors name the template and line
        raise CardError(f"rendering {CARD_TEMPLATES[ctx['kind']]}: {type(exc).__name__}: {exc}", hint="Check your template overrides (--template-dir).") from None
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"  # front matter first, no blank runs
    return Card(
        ctx["name"], ctx["kind"], text, ctx["metadata"], ctx["inputs_digest"], ctx["_numbers"], chart,
        headlines=ctx["_headlines"], records=ctx["_records"], record_problems=ctx["_record_problems"], warnings=ctx["_warnings"],
        damaged=ctx["_damaged"],
    )


def render_cards(manifest: Manifest, artifact: str | None = None, *, runs_dir=None, template_dir=None) -> list[Card]:
    names: list[str | None] = [artifact] if artifact else (list(manifest.artifacts) or [None])
    return [render_card(manifest, n, runs_dir=runs_dir, template_dir=template_dir) for n in names]


def card_dir(out: str | Path, card: Card | str) -> Path:
    return Path(out) / (card.name if isinstance(card, Card) else card)


def write_cards(cards: list[Card], out: str | Path) -> list[Path]:
    """Write each card's README.md (and results.png) to `out/<name>/`. Writes only what changed,
    so an unchanged card keeps its file (and its mtime)."""
    paths = []
    for card in cards:
        d = card_dir(out, card)
        d.mkdir(parents=True, exist_ok=True)
        readme = d / "README.md"
        if not readme.is_file() or readme.read_text(encoding="utf-8") != card.text:
            readme.write_text(card.text, encoding="utf-8")
        if card.chart is not None:
            png = d / "results.png"
            if not png.is_file() or png.read_bytes() != card.chart:
                png.write_bytes(card.chart)
        paths.append(readme)
    return paths
