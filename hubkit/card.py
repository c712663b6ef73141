"""`hubkit card`: model cards rendered from the manifest and the run records.

Every number on a card comes from a recorded run (`runs/`) or a declared claim (`claims:` in the
manifest): the renderer formats numbers here, in Python, and the templates only place them. The
front matter is built with huggingface_hub's `ModelCardData` (so its keys are the ones the Hub
reads) and only *reproduced* results enter `model-index`; claimed numbers stay in the body.

Templates live in `templates/card/`: one per artifact kind, made of small partials
(`card/_*.md.j2`). A user's template directory is searched first, so overriding one partial
needs only that file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .errors import CardError
from .manifest import Artifact, Claim, Manifest
from .portable import portable_command

CARD_TEMPLATES = {
    "adapter": "card/adapter.md.j2",
    "merged": "card/merged.md.j2",
    "full": "card/merged.md.j2",
    "quantized": "card/quantized.md.j2",
    "report": "card/report.md.j2",
}
LIBRARY = {"adapter": "peft", "merged": "transformers", "full": "transformers", "quantized": None, "report": None}
INPUTS_MARK = "hubkit:inputs"
RESULTS_BEGIN, RESULTS_END = "<!-- hubkit:results -->", "<!-- /hubkit:results -->"
REPORT_NAME = "report"

# License ids the Hub accepts in `license:` (from its documented list).
HUB_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear
    c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0
    cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0
    cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl
    ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
    lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0
    odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2
    llama3.3 llama4 gemma unknown other""".split()
)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


# -- numbers ------------------------------------------------------------------------------------


def decimals(x: Any) -> int:
    """Digits after the point in the shortest repr of a float (0.060 parses to 0.06: 2)."""
    if isinstance(x, bool) or not isinstance(x, float):
        return 0
    text = repr(x)
    if "e" in text or "." not in text:
        return 0
    return len(text.split(".")[1].rstrip("0")) if not text.endswith(".0") else 0


def fmt(x: Any, places: int | None = None) -> str:
    """A value as the card shows it: bools as words, ints with thousands separators, floats
    with `places` decimals (default: as written)."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "True" if x else "False"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if "e" in repr(x) and places is None:  # 5e-06 -> 5e-6, as people write learning rates
            return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(x)).replace("e+", "e")
        return f"{x:.{decimals(x) if places is None else places}f}"
    return str(x)


def human(n: int | float) -> str:
    """41943040 -> '41.94 M', 3794014208 -> '3.79 B'."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _is_fraction_metric(values: list[float]) -> bool:
    return all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)


# -- gathering facts ------------------------------------------------------------------------------


@dataclass
class Entry:
    """One number on the card: a reproduced result or a claim."""

    subject: str
    task: str
    metric: str
    value: Any
    stderr: float | None = None
    num_fewshot: int | None = None
    source: str = "claimed"  # claimed | reproduced
    strategy: str | None = None
    run_id: str | None = None
    local_data: bool = False
    baseline: bool = False
    reference_only: bool = False
    domain: str | None = None
    claim_source: str | None = None


def _latest_records(runs_dir: Path) -> list:
    """The newest successful record per (setup, subject)."""
    from .eval.records import list_records

    latest: dict[tuple, Any] = {}
    for rec in list_records(runs_dir):
        p = rec.provenance
        if p.get("status") == "ok":
            latest[(p.get("setup"), p.get("subject"))] = rec
    return list(latest.values())


def reproduced_entries(manifest: Manifest, records: list) -> list[Entry]:
    from .eval.records import normalize_results

    out = []
    for rec in records:
        p = rec.provenance
        setup = manifest.evals.get(p.get("setup") or "")
        metrics = setup.metrics if setup else None
        for row in normalize_results(rec.results()):
            if metrics and row["metric"] not in metrics:
                continue
            if row["filter"] not in ("none", None):
                continue
            out.append(
                Entry(
                    subject=p["subject"], task=row["task"], metric=row["metric"], value=row["value"], stderr=row["stderr"],
                    num_fewshot=int(row["num_fewshot"]) if row["num_fewshot"] is not None else None, source="reproduced",
                    strategy=p.get("strategy"), run_id=rec.run_id, local_data=bool(row["local_data"]), baseline=p["subject"] == "base",
                )
            )
    return out


def claim_entries(claims: list[Claim]) -> list[Entry]:
    return [
        Entry(
            subject=c.subject, task=c.task, metric=c.metric, value=c.value, stderr=c.stderr, num_fewshot=c.num_fewshot,
            baseline=c.baseline, reference_only=c.reference_only, domain=c.domain, claim_source=c.source,
        )
        for c in claims
    ]


def _verdict(e: Entry, claim: Entry) -> str:
    from .eval.summary import verdict

    if not isinstance(claim.value, (int, float)) or isinstance(claim.value, bool):
        return ""
    return verdict(e.value, e.stderr, float(claim.value), claim.stderr)


# -- tables --------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str | None = None
    numbers: set[str] = field(default_factory=set)  # every number string shown, for --check

    def markdown(self) -> str:
        head = "| " + " | ".join(self.header) + " |"
        sep = "|" + "|".join("---" for _ in self.header) + "|"
        body = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join([head, sep, *body])


def _label(subject: str, artifact_name: str | None, manifest: Manifest, base_model: str | None) -> str:
    if subject == artifact_name:
        return f"**this model** (`{subject}`)"
    if subject == "base":
        return f"base: {base_model}" if base_model else "base model"
    if subject in manifest.artifacts:
        repo = manifest.artifacts[subject].repo_id
        return f"[{subject}](https://huggingface.co/{repo})" if repo else subject
    return subject


def results_tables(manifest: Manifest, entries: list[Entry], artifact_name: str | None, base_model: str | None) -> list[Table]:
    """One table per task: a row per subject, a column per metric (value ± stderr), Δ vs the
    baseline row, and where each number comes from. A subject with both a reproduced and a
    claimed number shows the reproduced one, with the claim and a verdict beside it."""
    tables = []
    tasks: dict[str, list[Entry]] = {}
    for e in entries:
        tasks.setdefault(e.task, []).append(e)
    for task, items in tasks.items():
        metrics = list(dict.fromkeys(e.metric for e in items))
        subjects = list(dict.fromkeys(e.subject for e in items))
        cell: dict[tuple[str, str], Entry] = {}
        claimed: dict[tuple[str, str], Entry] = {}
        for e in items:
            key = (e.subject, e.metric)
            if e.source == "reproduced":
                cell[key] = e
            else:
                claimed[key] = e
                cell.setdefault(key, e)
        # column precision: the most decimals any value (or stderr) of the metric was given with
        # precision per column: as the claims were written; reproduced numbers get 4 places
        places = {m: max([decimals(e.value) for e in items if e.metric == m and e.source == "claimed" and isinstance(e.value, float)] + [0]) for m in metrics}
        if any(e.source == "reproduced" for e in items):
            places = {m: max(places[m], 4) for m in metrics}
        se_places = {m: max([decimals(e.stderr) for e in items if e.metric == m and e.source == "claimed" and e.stderr is not None] + [places[m]]) for m in metrics}
        base_subject = next((s for s in subjects if any(cell[(s, m)].baseline for m in metrics if (s, m) in cell)), None)
        show_delta = base_subject is not None
        with_claims = any(k in claimed and cell[k].source == "reproduced" for k in cell)
        header = ["model"] + metrics
        if show_delta:
            header += [f"Δ {m} vs baseline" for m in metrics if all(isinstance(cell[k].value, (int, float)) for k in cell if k[1] == m)]
        if with_claims:
            header += ["claimed", "verdict"]
        header += ["source"]
        numbers: set[str] = set()
        rows = []
        shots = sorted({e.num_fewshot for e in items if e.num_fewshot is not None})
        def value_text(e, m: str) -> str:
            """'value ± stderr' as printed; both numbers are recorded as backed by data."""
            text = fmt(e.value, places[m]) if isinstance(e.value, float) else fmt(e.value)
            numbers.add(text)
            if e.stderr is not None:
                se = fmt(float(e.stderr), se_places[m])
                numbers.add(se)
                text += f" ± {se}"
            return text

        for s in subjects:
            row = [_label(s, artifact_name, manifest, base_model)]
            for m in metrics:
                e = cell.get((s, m))
                if e is None:
                    row.append("")
                    continue
                row.append(value_text(e, m))
            if show_delta:
                for m in metrics:
                    if not all(isinstance(cell[k].value, (int, float)) for k in cell if k[1] == m):
                        continue
                    e, b = cell.get((s, m)), cell.get((base_subject, m))
                    if e is None or b is None or s == base_subject or e.reference_only or isinstance(e.value, bool):
                        row.append("")
                        continue
                    diff = float(e.value) - float(b.value)
                    vals = [float(x.value) for x in items if x.metric == m and isinstance(x.value, (int, float))]
                    text = f"{diff * 100:+.2f} pp" if _is_fraction_metric(vals) else f"{diff:+.{places[m]}f}"
                    numbers.add(text.split()[0].lstrip("+"))
                    row.append(text)
            if with_claims:
                cs = [(m, claimed[(s, m)]) for m in metrics if (s, m) in claimed and cell[(s, m)].source == "reproduced"]
                texts, verdicts = [], []
                for m, c in cs:
                    texts.append(value_text(c, m))
                    verdicts.append(_verdict(cell[(s, m)], c))
                row += ["; ".join(texts), "; ".join(v for v in verdicts if v)]
            row.append(_source(cell, s, metrics))
            rows.append(row)
        title = task + (f", {shots[0]}-shot" if len(shots) == 1 else "")
        local = any(e.local_data for e in items)
        note = "Reproduced numbers were computed on local copies of the task's data (same prompts, targets and metrics)." if local else None
        tables.append(Table(title, header, rows, note, numbers))
    return tables


def _source(cell: dict, subject: str, metrics: list[str]) -> str:
    es = [cell[(subject, m)] for m in metrics if (subject, m) in cell]
    e = es[0]
    if e.source == "reproduced":
        return f"reproduced: {e.strategy}, run `{e.run_id}`"
    if e.reference_only:
        return "reference only" + (f" ({e.claim_source})" if e.claim_source else "")
    return "claimed" + (f" ({e.claim_source})" if e.claim_source else "")


def report_tables(entries: list[Entry]) -> list[Table]:
    """Experiment reports: a row per task (grouped by domain), a column per subject; each row's
    numbers share the precision of its most precise value."""
    subjects = list(dict.fromkeys(e.subject for e in entries))
    tasks = list(dict.fromkeys(e.task for e in entries))
    by = {(e.task, e.subject): e for e in entries}
    has_domain = any(e.domain for e in entries)
    header = (["domain"] if has_domain else []) + ["task"] + subjects
    rows, numbers = [], set()
    for t in tasks:
        es = [by[(t, s)] for s in subjects if (t, s) in by]
        places = max([decimals(e.value) for e in es if isinstance(e.value, float)] + [0])
        row = ([next((e.domain for e in es if e.domain), "")] if has_domain else []) + [t]
        for s in subjects:
            e = by.get((t, s))
            text = "" if e is None else (fmt(e.value, places) if isinstance(e.value, float) else fmt(e.value))
            if text:
                numbers.add(text)
            row.append(text)
        rows.append(row)
    return [Table("Results", header, rows, None, numbers)] if rows else []


# -- lineage ------------------------------------------------------------------------------------


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


# -- adapter specs ------------------------------------------------------------------------------


def artifact_facts(manifest: Manifest, art: Artifact) -> dict | None:
    """Facts read from the artifact's files; from its `facts` JSON (written by `hubkit inspect
    --json`) when the files are not there (e.g. an example without weights)."""
    from .errors import InspectError
    from .inspection import inspect_path

    path = manifest.resolve(art.path)
    facts = None
    if path is not None and path.is_dir():
        try:
            facts = inspect_path(path, hash_files=False).to_dict()  # a card shows no hashes: do not re-read weights
        except InspectError:
            facts = None
    if facts is None and art.facts:
        fpath = manifest.resolve(art.facts)
        try:
            facts = json.loads(fpath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CardError(f"artifacts.*.facts: cannot read {fpath}: {exc}") from None
    if facts is None:
        return None
    base_params = facts.get("base_params")
    if base_params is None and art.base_model_path:
        try:
            base_params = inspect_path(manifest.resolve(art.base_model_path), hash_files=False).to_dict().get("params")
        except InspectError:
            base_params = None
    facts["base_params"] = base_params
    return facts


def specs_rows(facts: dict) -> list[list[str]]:
    if facts.get("kind") == "adapter":
        rows = [
            ["PEFT type", facts["peft_type"]],
            ["rank r", fmt(facts["r"])],
            ["alpha", fmt(facts["lora_alpha"]) + f" (scaling {fmt(facts['scaling'])}{' = α/√r, rslora' if facts['use_rslora'] else ' = α/r'})"],
            ["dropout", fmt(facts["lora_dropout"])],
            ["target modules", ", ".join(facts["module_types"] or facts["target_modules"]) + f" ({len(facts['module_types'] or facts['target_modules'])} types)"],
            ["adapted modules", fmt(facts["adapted_modules"])],
        ]
        trainable = facts["trainable_params"]
        text = f"{trainable:,} ({human(trainable)})"
        if facts.get("base_params"):
            text += f", {100 * trainable / facts['base_params']:.3f} % of the {human(facts['base_params'])} base"
        rows.append(["trainable parameters", text])
        rows.append(["weights dtype", ", ".join(facts["dtypes"])])
        if facts.get("use_dora"):
            rows.append(["DoRA", "yes"])
        if facts.get("modules_to_save"):
            rows.append(["modules saved whole", ", ".join(facts["modules_to_save"])])
        if facts.get("peft_version"):
            rows.append(["peft version", facts["peft_version"]])
        return rows
    rows = [
        ["architecture", ", ".join(facts.get("architectures") or [])],
        ["parameters", f"{facts['params']:,} ({human(facts['params'])})"],
        ["weights dtype", ", ".join(facts.get("dtypes") or [])],
        ["shards", fmt(len(facts.get("shards") or []))],
    ]
    merge = facts.get("merge_record")
    if merge:
        rows.append(["merged by", f"hubkit {merge.get('hubkit_version')} ({merge.get('method')})"])
        rows.append(["adapter sha256", (merge.get("adapter", {}).get("sha256", {}) or {}).get("adapter_model.safetensors", "")])
    return rows


# -- the card -----------------------------------------------------------------------------------


@dataclass
class Card:
    name: str  # artifact name, or "report"
    kind: str
    text: str
    metadata: dict
    inputs_digest: str
    numbers: set[str]
    chart: bytes | None = None


def _hub_datasets(manifest: Manifest, names: list[str]) -> list[str]:
    return sorted({manifest.datasets[n].hub_id for n in names if n in manifest.datasets and manifest.datasets[n].hub_id})


def _task_dataset(records: list, task: str) -> dict:
    """Hub dataset behind an lm-eval task, from the recorded task config (or its override source)."""
    for rec in records:
        p = rec.provenance
        ov = (p.get("data_overrides") or {}).get(task)
        if ov:
            # local files: the Hub dataset only when the manifest says they are a copy of it
            setup = (p.get("setup_config") or {}).get("data", {}).get(task, {})
            if setup.get("hub_id"):
                cfg = _load_task_yaml_chain(Path(ov["source_config"]))
                return {"type": setup["hub_id"], "config": cfg.get("dataset_name"), "split": cfg.get("test_split") or cfg.get("validation_split")}
            return {"type": f"local:{task}", "config": None, "split": None}
        cfgs = (rec.results().get("configs") or {})
        cfg = cfgs.get(task)
        if cfg:
            return {"type": cfg.get("dataset_path") or task, "config": cfg.get("dataset_name"), "split": cfg.get("test_split") or cfg.get("validation_split")}
    return {"type": task, "config": None, "split": None}


class _TolerantLoader(yaml.SafeLoader):
    pass


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _load_task_yaml_chain(path: Path) -> dict:
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader) or {}  # noqa: S506 (safe loader subclass)
    except (OSError, yaml.YAMLError):
        return {}
    inc = cfg.pop("include", None)
    if inc:
        merged = {}
        for i in inc if isinstance(inc, list) else [inc]:
            merged.update(_load_task_yaml_chain(Path(i) if Path(i).is_absolute() else path.parent / i))
        merged.update(cfg)
        return merged
    return cfg


def model_index_results(manifest: Manifest, art_name: str, entries: list[Entry], records: list, kind: str):
    from huggingface_hub import EvalResult

    results = []
    for e in entries:
        if e.source != "reproduced" or isinstance(e.value, bool) or e.value is None:
            continue
        subject_ok = e.subject == art_name or (kind in ("merged", "full") and e.subject == manifest.artifacts[art_name].adapter and e.strategy == "merged-fp16")
        if not subject_ok:
            continue
        ds = _task_dataset(records, e.task)
        args = {"num_fewshot": str(e.num_fewshot)} if e.num_fewshot is not None else None
        repo = manifest.artifacts[art_name].repo_id
        # huggingface_hub wants a URL with a source name: the run record, as publish uploads it
        source = {"source_name": f"hubkit eval ({e.strategy}, run {e.run_id})", "source_url": f"https://huggingface.co/{repo}/tree/main/eval/{e.run_id}"} if repo else {}
        results.append(
            EvalResult(
                task_type="text-generation", dataset_type=ds["type"], dataset_name=e.task, dataset_config=ds["config"], dataset_split=ds["split"],
                dataset_args=args, metric_type=e.metric, metric_value=round(float(e.value), 4), metric_name=e.metric, **source,
            )
        )
    return results


def _front_matter(manifest: Manifest, name: str, art: Artifact | None, kind: str, entries: list[Entry], records: list) -> tuple[str, dict]:
    from huggingface_hub import ModelCardData

    p = manifest.project
    kwargs: dict[str, Any] = {
        "license": p.license,
        "language": list(p.language) or None,
        "tags": sorted(set(["hubkit", *p.tags] + (["lora", "peft"] if kind == "adapter" else []) + (["merge"] if kind == "merged" else []))),
    }
    if p.license == "other":
        kwargs.update(license_name=p.license_name, license_link=p.license_link)
    if art is not None:
        kwargs["library_name"] = LIBRARY.get(kind)
        kwargs["pipeline_tag"] = p.pipeline_tag
        base = art.base_model
        if base:
            kwargs["base_model"] = base
            kwargs["base_model_relation"] = art.hub_relation
        ds = _hub_datasets(manifest, art.datasets)
        if ds:
            kwargs["datasets"] = ds
        evals = model_index_results(manifest, name, entries, records, kind)
        if evals:
            kwargs["model_name"] = art.repo_id or name
            kwargs["eval_results"] = evals
    data = ModelCardData(**{k: v for k, v in kwargs.items() if v is not None})
    text = data.to_yaml()
    return text, data.to_dict()


def _inputs_digest(manifest: Manifest, records: list, template_dir: str | None) -> str:
    h = hashlib.sha256()
    if manifest._source is not None and Path(manifest._source).is_file():
        h.update(Path(manifest._source).read_bytes())
    else:
        h.update(manifest.model_dump_json().encode())
    for rec in sorted(records, key=lambda r: r.run_id):
        h.update(rec.run_id.encode())
        h.update(json.dumps(rec.provenance, sort_keys=True).encode())
    h.update(__version__.encode())
    if template_dir:
        for f in sorted(Path(template_dir).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(template_dir)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_context(manifest: Manifest, name: str | None, runs_dir: Path, template_dir: str | None = None) -> dict:
    art = manifest.artifacts.get(name) if name else None
    kind = art.kind if art else "report"
    records = _latest_records(runs_dir)
    relevant = records
    if art is not None:
        target = name if art.kind == "adapter" else (art.adapter or name)
        setups = {r.provenance.get("setup") for r in records if r.provenance.get("subject") == target}
        relevant = [r for r in records if r.provenance.get("setup") in setups]
    entries = reproduced_entries(manifest, relevant) + claim_entries(manifest.claims)
    base_model = art.base_model if art else None
    subject_name = name if kind == "adapter" else (art.adapter if art and art.adapter else name)
    tables = report_tables(entries) if kind == "report" else results_tables(manifest, entries, subject_name, base_model)
    front, metadata = _front_matter(manifest, name or REPORT_NAME, art, kind, entries, relevant)
    facts = artifact_facts(manifest, art) if art else None
    sibling = manifest.artifacts.get(art.merged) if art and art.merged else None
    source_adapter = manifest.artifacts.get(art.adapter) if art and art.adapter else None
    reproduce = _reproduce_view(manifest, name, relevant)
    datasets = [
        {
            "title": d.title or key, "hub_id": d.hub_id, "rows": fmt(d.rows) if d.rows is not None else "", "unit": d.unit,
            "license": d.license or "", "description": d.description, "filters": d.filters,
        }
        for key, d in manifest.datasets.items()
    ]
    sections = []
    for s in manifest.sections:
        body = s.body if s.body is not None else manifest.resolve(s.file).read_text(encoding="utf-8")
        sections.append({"title": s.title, "body": body.strip()})
    numbers = set().union(*(t.numbers for t in tables)) if tables else set()
    return {
        "hubkit_version": __version__,
        "front_matter": front.strip(),
        "metadata": metadata,
        "project": manifest.project,
        "name": name or REPORT_NAME,
        "kind": kind,
        "artifact": art,
        "title": (art.title if art and art.title else manifest.project.name),
        "summary": (art.summary if art and art.summary else manifest.project.summary),
        "sibling": sibling,
        "source_adapter": source_adapter,
        "facts": facts,
        "specs": specs_rows(facts) if facts else [],
        "results": tables,
        "results_begin": RESULTS_BEGIN,
        "results_end": RESULTS_END,
        "chart": None,
        "lineage": lineage_view(manifest, subject_name),
        "datasets": datasets,
        "training": {k: fmt(v) for k, v in (art.training.items() if art else [])},
        "training_metrics": {k: fmt(v) for k, v in (art.training_metrics.items() if art else [])},
        "reproduce": reproduce,
        "sections": sections,
        "limitations": manifest.project.limitations,
        "citations": manifest.project.citations,
        "inputs_digest": _inputs_digest(manifest, relevant, template_dir),
        "inputs_mark": INPUTS_MARK,
        "_numbers": numbers,
        "_records": relevant,
        "_entries": entries,
    }


def _reproduce_view(manifest: Manifest, name: str | None, records: list) -> list[dict]:
    """Per setup: the exact lm-eval invocation the recorded run used (or the documented one), its
    pins, and what was installed."""
    out = []
    if name and manifest.artifacts[name].kind != "adapter":
        name = manifest.artifacts[name].adapter  # a merged checkpoint is evaluated as its adapter
        if name is None:
            return out
    for setup_name, setup in manifest.evals.items():
        if name and setup.artifacts and name not in setup.artifacts:
            continue
        run = next((r for r in records if r.provenance.get("setup") == setup_name and r.provenance.get("subject") == name), None)
        env = run.provenance.get("env") if run else None
        out.append(
            {
                "setup": setup_name,
                "tasks": ", ".join(setup.tasks),
                "num_fewshot": setup.num_fewshot,
                "pins": [f"{k}{v}" for k, v in setup.pins.items()],
                "documented": setup.command,
                "hubkit": f"hubkit eval --setup {setup_name}" + (f" --artifact {name}" if name else ""),
                "recorded": portable_command(run.provenance["command"], manifest.root) if run and run.provenance.get("command") else None,
                "run_id": run.run_id if run else None,
                "strategy": run.provenance.get("strategy") if run else None,
                "fallback_reason": run.provenance.get("fallback_reason") if run else None,
                "installed": sorted(f"{k}=={v}" for k, v in ((env or {}).get("installed") or {}).items() if v),
                "hardware": (run.provenance.get("hardware") if run else None),
                "local_data": bool(run and run.provenance.get("data_overrides")),
            }
        )
    return out


def results_chart(tables: list[Table], entries: list[Entry]) -> bytes | None:
    """A bar chart (PNG) of reproduced numbers when there is more than one run; None without
    matplotlib or with a single run."""
    runs = {e.run_id for e in entries if e.source == "reproduced"}
    if len(runs) < 2:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import io

        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rep = [e for e in entries if e.source == "reproduced" and isinstance(e.value, float)]
    groups = list(dict.fromkeys((e.task, e.metric) for e in rep))
    subjects = list(dict.fromkeys(e.subject for e in rep))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups) * max(1, len(subjects)) / 2, 3.2), dpi=100)
    width = 0.8 / max(1, len(subjects))
    for j, s in enumerate(subjects):
        xs, ys, es = [], [], []
        for i, g in enumerate(groups):
            e = next((x for x in rep if (x.task, x.metric) == g and x.subject == s), None)
            if e:
                xs.append(i + j * width)
                ys.append(e.value)
                es.append(e.stderr or 0)
        ax.bar(xs, ys, width, yerr=es, label=s, capsize=3)
    ax.set_xticks([i + width * (len(subjects) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{t}\n{m}" for t, m in groups], fontsize=8)
    ax.legend(fontsize=8)
    ax.set_ylabel("score (± stderr)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def render_card(manifest: Manifest, name: str | None = None, *, runs_dir: str | Path | None = None, template_dir: str | Path | None = None) -> Card:
    """Render the card of artifact `name` (or, with no artifacts, the project's report card)."""
    from .templating import render_template

    if name is not None and name not in manifest.artifacts:
        raise CardError(f"no artifact named {name!r}", hint=f"Known artifacts: {', '.join(manifest.artifacts) or '(none)'}.")
    runs = Path(runs_dir) if runs_dir else manifest.root / "runs"
    tdir = str(template_dir) if template_dir else None
    ctx = build_context(manifest, name, runs, tdir)
    chart = results_chart(ctx["results"], ctx["_entries"])
    if chart is not None:
        ctx["chart"] = "results.png"
    try:
        text = render_template(CARD_TEMPLATES[ctx["kind"]], tdir, **{k: v for k, v in ctx.items() if not k.startswith("_")})
    except Exception as exc:  # jinja's errors name the template and line
        raise CardError(f"rendering {CARD_TEMPLATES[ctx['kind']]}: {type(exc).__name__}: {exc}", hint="Check your template overrides (--template-dir).") from None
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"  # front matter first, no blank runs
    return Card(ctx["name"], ctx["kind"], text, ctx["metadata"], ctx["inputs_digest"], ctx["_numbers"], chart)


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


# -- checks -------------------------------------------------------------------------------------


def check_card(manifest: Manifest, card: Card, existing: Path | None = None) -> list[str]:
    """Problems with a rendered card (and, given the README on disk, whether it is stale)."""
    from huggingface_hub import ModelCard

    problems: list[str] = []
    where = f"{card.name}"
    parsed = ModelCard(card.text).data.to_dict()
    for key in ("base_model", "license", "base_model_relation", "datasets", "library_name"):
        if parsed.get(key) != card.metadata.get(key):
            problems.append(f"{where}: front matter {key}: parsed {parsed.get(key)!r}, rendered {card.metadata.get(key)!r}")
    if _model_index_values(parsed) != _model_index_values(card.metadata):
        problems.append(f"{where}: front matter model-index does not parse back to the same values")
    lic = parsed.get("license")
    if not lic:
        problems.append(f"{where}: no license in the front matter (project.license)")
    elif lic not in HUB_LICENSES:
        problems.append(f"{where}: license {lic!r} is not on the Hub's list; use 'other' with license_name and license_link")
    bases = parsed.get("base_model")
    for b in bases if isinstance(bases, list) else ([bases] if bases else []):
        if _looks_local(str(b), manifest.root):
            problems.append(f"{where}: base_model {b!r} is a local path, not a Hub id")
    for d in parsed.get("datasets") or []:
        if _looks_local(str(d), manifest.root):
            problems.append(f"{where}: datasets entry {d!r} is a local path, not a Hub id")
    problems += [f"{where}: {p}" for p in unbacked_numbers(card)]
    if existing is not None:
        if not existing.is_file():
            problems.append(f"{where}: {existing} does not exist (run `hubkit card`)")
        else:
            m = re.search(rf"<!-- {INPUTS_MARK} ([0-9a-f]+)", existing.read_text(encoding="utf-8"))
            if not m or m.group(1) != card.inputs_digest:
                problems.append(f"{where}: {existing} is stale: the manifest, run records or templates changed since it was rendered (run `hubkit card`)")
    return problems


_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt", ".arrow", ".safetensors", ".bin", ".gz", ".zip", ".tar")


def _looks_local(value: str, root: Path) -> bool:
    """A path rather than a Hub id: not owner/name, starts like a path, names a file, or exists."""
    if not _REPO_ID.match(value) or value.startswith((".", "/", "~")) or value.lower().endswith(_FILE_SUFFIXES):
        return True
    return (root / value).exists() or Path(value).expanduser().exists()


def _model_index_values(meta: dict) -> list:
    out = []
    for block in meta.get("model-index") or []:
        for res in block.get("results") or []:
            ds = res.get("dataset") or {}
            for m in res.get("metrics") or []:
                out.append((ds.get("name"), ds.get("type"), ds.get("config"), ds.get("split"), json.dumps(ds.get("args"), sort_keys=True), m.get("type"), m.get("value")))
    return sorted(out, key=str)


_NUMBER = re.compile(r"(?<![\w.`/-])[-+]?\d[\d,]*(?:\.\d+)?(?![\w.`/-])")


def unbacked_numbers(card: Card) -> list[str]:
    """Numbers in the results section that no run or claim produced (e.g. typed into a template)."""
    problems = []
    for block in re.findall(re.escape(RESULTS_BEGIN) + r"(.*?)" + re.escape(RESULTS_END), card.text, re.DOTALL):
        for line in block.splitlines():
            if not line.startswith("|") or set(line) <= set("|-: "):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            for c in cells[1:]:  # the first cell is the row label
                if "run `" in c or c in ("claimed", "reference only"):
                    continue
                for num in _NUMBER.findall(c):
                    n = num.lstrip("+")
                    if n not in card.numbers and n.rstrip("%") not in card.numbers:
                        problems.append(f"results table shows {num!r} ({c!r}), which no run record or claim backs")
    return problems
