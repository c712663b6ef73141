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
from .metadata import claimed_results, eval_results_files, front_matter, model_index_results
from .numbers import fmt
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

__all__ = ["Card", "CARD_TEMPLATES", "HUB_LICENSES", "build_context", "card_dir", "check_card", "hub_base_model", "render_card", "render_cards", "reviewed_card", "write_cards"]


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
    eval_results: dict[str, str] = field(default_factory=dict)  # `.eval_results/<task>.yaml` -> its text

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
    if art.kind == "merged" and art.adapter in manifest.artifacts and manifest.artifacts[art.adapter].kind == "adapter":
        # a merged checkpoint's parent is its adapter's base
        from .specs import artifact_facts

        adapter = manifest.artifacts[art.adapter]
        return hub_base_model(manifest, adapter, artifact_facts(manifest, adapter))
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
    for rel in _referenced_files(manifest):
        path = manifest.resolve(rel)
        h.update(rel.encode())
        h.update(path.read_bytes() if path.is_file() else b"(missing)")
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


def _referenced_files(manifest: Manifest) -> list[str]:
    """Files a card reads besides the manifest (prose, usage, upstream card, facts): a change to
    one makes the cards on disk stale."""
    refs = [manifest.project.description_file, *(s.file for s in manifest.sections), manifest.card.usage_file, manifest.card.upstream_file]
    for art in manifest.artifacts.values():
        refs += [art.facts, *((art.card.usage_file, art.card.upstream_file) if art.card else ())]
    return sorted({r for r in refs if r})


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


def _strip_front_matter(text: str) -> str:
    """An upstream card kept as a section: its body, without its own YAML metadata."""
    m = re.match(r"\A\s*---\r?\n.*?\r?\n---\r?\n", text, re.DOTALL)
    return text[m.end():] if m else text


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


# Each kind's sections, in order, when the manifest's `card.sections` does not say.
DEFAULT_LAYOUT = {
    "adapter": ["about", "results", "specs", "usage", "reproduce", "lineage", "training", "data", "sections", "limitations", "license", "citations"],
    "merged": ["about", "results", "specs", "usage", "reproduce", "lineage", "data", "sections", "limitations", "license", "citations"],
    "full": ["about", "results", "specs", "usage", "reproduce", "lineage", "training", "data", "sections", "limitations", "license", "citations"],
    "quantized": ["about", "results", "specs", "files", "usage", "lineage", "data", "sections", "upstream", "limitations", "license", "citations"],
    "report": ["about", "sections", "results", "lineage", "limitations", "license", "citations"],
}
_USAGE = {"adapter": "card/_usage_adapter.md.j2", "merged": "card/_usage_merged.md.j2", "full": "card/_usage_merged.md.j2", "quantized": "card/_usage_quantized.md.j2"}


def _read(manifest: Manifest, rel: str, where: str) -> str:
    path = manifest.resolve(rel)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"{where}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})", hint="Paths are relative to the manifest.") from None


def card_layout(manifest: Manifest, art: Artifact | None):
    """The artifact's own `card:` settings, else the manifest's."""
    return art.card if art is not None and art.card is not None else manifest.card


def _template_exists(name: str, template_dir: str | None) -> bool:
    from ..templating import builtin_template_dir

    return any((Path(d) / name).is_file() for d in ([template_dir] if template_dir else []) + [str(builtin_template_dir())])


def _layout(manifest: Manifest, art: Artifact | None, kind: str, sections: list[dict], template_dir: str | None) -> list[dict]:
    """The card's parts in order: {name, template, section}. A user section placed on its own
    (`section:TITLE`) is not repeated under `sections`."""
    layout = card_layout(manifest, art)
    names = list(layout.sections) if layout.sections is not None else list(DEFAULT_LAYOUT[kind])
    placed = {n.split(":", 1)[1] for n in names if n.startswith("section:")}
    titles = {s["title"] for s in sections}
    for title in placed - titles:
        raise CardError(f"card.sections: section:{title}: the manifest has no section titled {title!r}", hint=f"Its sections: {', '.join(sorted(titles)) or '(none)'}.")
    parts = []
    for n in names:
        if n.startswith("section:"):
            parts.append({"name": n, "template": "card/_section.md.j2", "section": next(s for s in sections if s["title"] == n.split(":", 1)[1])})
            continue
        if n == "usage":
            template = "card/_usage_custom.md.j2" if (layout.usage or layout.usage_file) else _USAGE.get(kind)
        elif n == "sections":
            parts.append({"name": n, "template": "card/_sections.md.j2", "section": [s for s in sections if s["title"] not in placed]})
            continue
        else:
            template = f"card/_{n}.md.j2"
        if template and _template_exists(template, template_dir):
            parts.append({"name": n, "template": template, "section": None})
    return parts


def _card_datasets(manifest: Manifest, art: Artifact | None) -> list[str]:
    """Dataset names a card lists, in the manifest's order: the artifact's own, those of the
    lineage stages that led to it (its adapter's, for a merged checkpoint), and those no artifact
    or stage names; every dataset on a report."""
    if art is None:
        return list(manifest.datasets)
    names = list(art.datasets)
    source = manifest.artifacts.get(art.adapter) if art.adapter else None
    if source is not None:
        names += source.datasets
    stage_name = art.stage or (source.stage if source is not None else None)
    stages = {s.name: s for s in manifest.lineage}
    seen = set()
    while stage_name in stages and stage_name not in seen:
        seen.add(stage_name)
        names += stages[stage_name].data
        stage_name = stages[stage_name].parent
    # a dataset no artifact or stage names belongs to the whole project: every card shows it
    named = {d for a in manifest.artifacts.values() for d in a.datasets} | {d for st in manifest.lineage for d in st.data}
    names += [d for d in manifest.datasets if d not in named]
    return [n for n in manifest.datasets if n in set(names)]


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
    layout_cfg = card_layout(manifest, art)
    if kind == "report":
        tables, headlines = report_tables(cells, layout_cfg.table_notes), []
    else:
        tables, headlines = results_tables(manifest, cells, label, layout=layout_cfg.results_layout, table_notes=layout_cfg.table_notes)
    own = {name, "base"} if art is not None and evaluated_as(manifest, name) == "base" else {name}
    own_claims = [c.claim for c in cells if c.claim is not None and c.subject in own] if art else []
    evals = (model_index_results(headlines, art.repo_id, is_this) + claimed_results(own_claims, art.repo_id, manifest.benchmarks)) if art else []
    front, metadata = front_matter(manifest, name or REPORT_NAME, art, kind, base_model, evals)
    eval_files = eval_results_files(manifest, art, headlines, own_claims, is_this) if art else {}
    sibling = manifest.artifacts.get(art.merged) if art and art.merged else None
    source_adapter = manifest.artifacts.get(art.adapter) if art and art.adapter else None
    datasets = []
    for key in _card_datasets(manifest, art):
        d = manifest.datasets[key]
        datasets.append(
            {
                "title": d.title or key, "hub_id": d.hub_id, "rows": fmt(d.rows) if d.rows is not None else "", "unit": d.unit,
                "license": d.license or "", "description": d.description, "filters": d.filters,
            }
        )
    sections = []
    for i, s in enumerate(manifest.sections):
        body = s.body if s.body is not None else _read(manifest, s.file, f"sections.{i} ({s.title!r})")
        sections.append({"title": s.title, "body": body.strip()})
    layout = card_layout(manifest, art)
    description = manifest.project.description
    if manifest.project.description_file:
        description = "\n\n".join(x for x in (description, _read(manifest, manifest.project.description_file, "project.description_file")) if x)
    usage = layout.usage if layout.usage is not None else (_read(manifest, layout.usage_file, "card.usage_file") if layout.usage_file else None)
    upstream = _read(manifest, layout.upstream_file, "card.upstream_file") if layout.upstream_file else None
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
        "layout": _layout(manifest, art, kind, sections, template_dir),
        "description": (description or "").strip(),
        "authors": manifest.project.authors,
        "links": manifest.project.links,
        "usage_text": (usage or "").strip(),
        "upstream": _strip_front_matter(upstream or "").strip(),
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
        "_eval_results": eval_files,
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
        damaged=ctx["_damaged"], eval_results=ctx["_eval_results"],
    )


def render_cards(manifest: Manifest, artifact: str | None = None, *, runs_dir=None, template_dir=None) -> list[Card]:
    names: list[str | None] = [artifact] if artifact else (list(manifest.artifacts) or [None])
    return [render_card(manifest, n, runs_dir=runs_dir, template_dir=template_dir) for n in names]


def card_dir(out: str | Path, card: Card | str) -> Path:
    return Path(out) / (card.name if isinstance(card, Card) else card)


CARDS_RECORD = ".hubkit-cards.json"


def write_cards(cards: list[Card], out: str | Path, *, template_dir: str | Path | None = None) -> list[Path]:
    """Write each card's README.md (and results.png) to `out/<name>/`, and what they were rendered
    with (`out/.hubkit-cards.json`: the template folder), so that publish uploads exactly these
    cards. Writes only what changed, so an unchanged card keeps its file (and its mtime)."""
    import json

    out = Path(out)
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
        for rel, text in card.eval_results.items():
            f = d / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            if not f.is_file() or f.read_text(encoding="utf-8") != text:
                f.write_text(text, encoding="utf-8")
        paths.append(readme)
    record = out / CARDS_RECORD
    old = json.loads(record.read_text()) if record.is_file() else {}
    data = {"format": 1, "template_dir": str(Path(template_dir).resolve()) if template_dir else None, "cards": {**(old.get("cards") or {}), **{c.name: c.inputs_digest for c in cards}}}
    if old != data:
        record.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return paths


def reviewed_card(manifest: Manifest, name: str, out: str | Path, *, runs_dir: str | Path | None = None, say=lambda m: None) -> Card:
    """The card `hubkit card` wrote to `out/<name>/`, checked to be what the manifest, the run
    records and the same templates render now: the card to publish is the card that was reviewed.

    With no card on disk yet, it is rendered, written there (so it can be read) and returned.
    Raises CardError when the card on disk is stale, was edited after rendering, or was rendered
    with a template folder that is gone."""
    import json

    out = Path(out)
    readme = card_dir(out, name) / "README.md"
    record = out / CARDS_RECORD
    meta = json.loads(record.read_text()) if record.is_file() else {}
    tdir = meta.get("template_dir")
    if tdir and not Path(tdir).is_dir():
        raise CardError(f"{readme} was rendered with templates from {tdir}, which no longer exists", hint="Run `hubkit card` again (with --template-dir if you use one), review the card, then publish.")
    card = render_card(manifest, name, runs_dir=runs_dir, template_dir=tdir)
    if not readme.is_file():
        write_cards([card], out, template_dir=tdir)
        say(f"rendered {readme} (there was no card to review; read it there)")
        return card
    text = readme.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {INPUTS_MARK} ([0-9a-f]+)", text)
    if not m or m.group(1) != card.inputs_digest:
        raise CardError(
            f"{readme} is stale: the manifest, run records or templates changed since `hubkit card` rendered it",
            hint="Run `hubkit card` (with the same --template-dir), review the card, then publish: publish uploads the card you reviewed.",
        )
    if text != card.text:
        raise CardError(
            f"{readme} was edited after `hubkit card` rendered it",
            hint="Cards are rendered from hubkit.yaml and the templates: put the change there (a section, a claim, a --template-dir partial) and run `hubkit card`.",
        )
    png = readme.parent / "results.png"
    if card.chart is not None and (not png.is_file() or png.read_bytes() != card.chart):
        raise CardError(f"{png} is missing or differs from the chart the card links to", hint="Run `hubkit card` again.")
    for rel, body in card.eval_results.items():
        f = readme.parent / rel
        if not f.is_file() or f.read_text(encoding="utf-8") != body:
            raise CardError(f"{f} is missing or differs from what `hubkit card` renders now", hint="Run `hubkit card` again, review, then publish.")
    return card
