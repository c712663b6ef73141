"""A card's Hub metadata (the YAML front matter), built with huggingface_hub's card classes.

`model-index` holds the headline numbers of this artifact's own runs: a group's aggregate (not
its 57 subtasks), each task once per few-shot setting. huggingface_hub's writer merges results
that share (task type, dataset, config, split, revision) into one entry and keeps only the first
entry's few-shot and source, so 25-shot numbers would be published under a 0-shot label: the
model-index is therefore written here, one entry per (dataset, few-shot, source), in the same
shape huggingface_hub writes and parses. Parsing it back gives every value with its own args.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..eval.claims import Cell
from ..eval.taskdata import load_task_config
from ..hub.rules import HUB_LICENSES  # noqa: F401 (re-exported for callers of hubkit.card)
from ..manifest import Artifact, Manifest
from .tables import Headline, top_group

LIBRARY = {"adapter": "peft", "merged": "transformers", "full": "transformers", "quantized": None, "report": None}


def hub_datasets(manifest: Manifest, names: list[str]) -> list[str]:
    return sorted({manifest.datasets[n].hub_id for n in names if n in manifest.datasets and manifest.datasets[n].hub_id})


def task_dataset(cell: Cell) -> dict:
    """The dataset behind a task's number, from its record: the Hub dataset lm-eval read, or for
    local copies the Hub dataset the manifest says they copy (else a `local:` label)."""
    rec, task = cell.record, cell.task
    override = (rec.data_overrides or {}).get(task)
    if override is None and cell.row.group:  # a subtask of a group pointed at local data
        parent = (rec.data_overrides or {}).get(cell.row.group) or {}
        override = (parent.get("subtasks") or {}).get(task)
    if override:
        hub_id = ((rec.setup_config.get("data") or {}).get(task) or {}).get("hub_id")
        if hub_id:
            cfg = load_task_config(Path(override["source_config"]))
            return {"type": hub_id, "config": cfg.get("dataset_name"), "split": cfg.get("test_split") or cfg.get("validation_split")}
        return {"type": f"local:{task}", "config": None, "split": None}
    if cell.row.is_group:
        leaves = [r.task for r in rec.rows if r.group == task]
        cfg = rec.task_config(leaves[0]) if leaves else {}
        return {"type": cfg.get("dataset_path") or task, "config": None, "split": cfg.get("test_split") or cfg.get("validation_split")}
    cfg = rec.task_config(task)
    if cfg:
        return {"type": cfg.get("dataset_path") or task, "config": cfg.get("dataset_name"), "split": cfg.get("test_split") or cfg.get("validation_split")}
    return {"type": task, "config": None, "split": None}


def model_index_results(headlines: list[Headline], repo_id: str | None, is_this) -> list:
    """EvalResults for this artifact's headline numbers (not a group's subtasks, not partial
    groups, not unavailable values)."""
    from huggingface_hub import EvalResult

    out = []
    for h in headlines:
        c = h.cell
        if c.row is None or c.row.value is None or not is_this(c):
            continue
        if top_group(c) is not None:
            continue  # part of a group: the group's headline is the number
        coverage = ((c.record.data_overrides or {}).get(c.task) or {}).get("coverage") if c.row.is_group else None
        if coverage and coverage.get("missing"):
            continue  # an aggregate over some subtasks is not the group's score
        ds = task_dataset(c)
        args = {"num_fewshot": str(c.num_fewshot)} if c.num_fewshot is not None else None
        how = "imported lm-eval results" if c.origin == "imported" else f"hubkit eval ({c.record.strategy}"
        source = {}
        if repo_id:
            name = f"{how}, run {c.record.run_id})" if c.origin != "imported" else f"{how}, run {c.record.run_id}"
            source = {"source_name": name, "source_url": f"https://huggingface.co/{repo_id}/tree/main/eval/{c.record.run_id}"}
        out.append(
            EvalResult(
                task_type="text-generation", dataset_type=ds["type"], dataset_name=c.task, dataset_config=ds["config"], dataset_split=ds["split"],
                dataset_args=args, metric_type=c.metric, metric_value=round(float(c.row.value), 4), metric_name=c.metric_label, **source,
            )
        )
    return out


def _entry_key(r) -> tuple:
    return (*r.unique_identifier, repr(sorted((r.dataset_args or {}).items())), r.source_url, r.source_name, r.dataset_name)


def model_index(model_name: str, results: list) -> list[dict]:
    """huggingface_hub's model-index shape, one entry per (dataset, few-shot args, source)."""
    from huggingface_hub.repocard_data import _remove_none

    groups: dict[tuple, list] = {}
    for r in results:
        groups.setdefault(_entry_key(r), []).append(r)
    entries = []
    for items in groups.values():
        first = items[0]
        entry: dict[str, Any] = {
            "task": {"type": first.task_type, "name": first.task_name},
            "dataset": {
                "name": first.dataset_name, "type": first.dataset_type, "config": first.dataset_config, "split": first.dataset_split,
                "revision": first.dataset_revision, "args": first.dataset_args,
            },
            "metrics": [{"type": r.metric_type, "value": r.metric_value, "name": r.metric_name} for r in items],
        }
        if first.source_url is not None:
            entry["source"] = {"url": first.source_url, "name": first.source_name}
        entries.append(entry)
    return _remove_none([{"name": model_name, "results": entries}])


def _hub_dataset_of(task: str) -> dict:
    """The Hub dataset lm-eval's config of `task` reads (type, config, split), from the lm-eval
    installed here without importing it; just the task's name when there is none."""
    from importlib.util import find_spec

    from ..eval.taskdata import task_index

    try:
        spec = find_spec("lm_eval")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        index = task_index(Path(list(spec.submodule_search_locations)[0]))
        path = index.tasks.get(task)
        if path:
            cfg = load_task_config(path)
            if isinstance(cfg.get("dataset_path"), str):
                return {"type": cfg["dataset_path"], "config": cfg.get("dataset_name"), "split": cfg.get("test_split") or cfg.get("validation_split")}
    return {"type": task, "config": None, "split": None}


def _lm_eval_tasks() -> set[str]:
    """Task and group names of the lm-eval installed here (empty without one)."""
    from importlib.util import find_spec

    from ..eval.taskdata import task_index

    try:
        spec = find_spec("lm_eval")
    except (ImportError, ValueError):
        return set()
    if spec is None or not spec.submodule_search_locations:
        return set()
    index = task_index(Path(list(spec.submodule_search_locations)[0]))
    return set(index.tasks) | set(index.groups)


def claimed_results(claims: list, repo_id: str | None, benchmarks: dict | None = None) -> list:
    """Self-reported EvalResults for this artifact's own claimed numbers, each with its source
    (a claim's URL, else the card itself with the source's words), so huggingface_hub and the Hub
    keep them apart from reproduced ones."""
    from huggingface_hub import EvalResult

    from ..eval.claims import claim_number, split_metric

    out = []
    known = None
    for c in claims:
        value = claim_number(c)
        if value is None or c.reference_only or c.model_index is False:
            continue
        if c.model_index is None:
            # numbers on an evaluation task only: a training statistic is not an eval result
            known = _lm_eval_tasks() if known is None else known
            if c.task not in known and c.task not in (benchmarks or {}):
                continue
        if isinstance(c.value, int):
            value = c.value
        metric, filt = split_metric(c.metric)
        ds = _hub_dataset_of(c.task)
        text = (c.source or "").strip()
        if text.startswith(("http://", "https://")) and " " not in text:
            source = {"source_url": text, "source_name": "self-reported"}
        elif repo_id:
            source = {"source_url": f"https://huggingface.co/{repo_id}", "source_name": "self-reported" + (f": {text}" if text else "")}
        else:
            source = {}
        out.append(
            EvalResult(
                task_type="text-generation", dataset_type=ds["type"], dataset_name=c.task, dataset_config=ds["config"], dataset_split=ds["split"],
                dataset_args={"num_fewshot": str(c.num_fewshot)} if c.num_fewshot is not None else None,
                metric_type=metric, metric_value=value, metric_name=metric + (f" ({filt})" if filt else ""), **source,
            )
        )
    return out


def eval_results_files(manifest: Manifest, art: Artifact, headlines: list[Headline], claims: list, is_this) -> dict[str, str]:
    """The Hub's `.eval_results/<task>.yaml` files, for the tasks the manifest maps to registered
    benchmark datasets (`benchmarks:`): this model's reproduced headline and its claimed numbers,
    each with its source. Written with huggingface_hub's EvalResultEntry."""
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    from ..eval.claims import claim_number, split_metric

    files = {}
    page = f"https://huggingface.co/{art.repo_id}" if art.repo_id else None
    for task, bench in manifest.benchmarks.items():
        wanted = split_metric(bench.metric) if bench.metric else None
        entries = []
        for h in headlines:
            c = h.cell
            if c.task != task or c.row is None or c.row.value is None or not is_this(c):
                continue
            if wanted and (c.metric, c.filter if wanted[1] else None) != (wanted[0], wanted[1]):
                continue
            if not wanted and entries:
                continue  # the first metric of the task
            url = f"https://huggingface.co/{art.repo_id}/tree/main/eval/{c.record.run_id}" if art.repo_id else None
            shots = f"{c.num_fewshot}-shot, " if c.num_fewshot is not None else ""
            entries.append(
                EvalResultEntry(
                    dataset_id=bench.dataset_id, task_id=bench.task_id, value=round(float(c.row.value), 4), date=c.record.finished_at,
                    source_url=url, source_name="hubkit run record" if url else None,
                    notes=f"{c.metric_label}, {shots}" + ("imported lm-eval results" if c.origin == "imported" else f"reproduced by hubkit eval ({c.record.strategy})"),
                )
            )
        for claim in claims:
            value = claim_number(claim)
            if value is None or claim.reference_only or claim.task != task:
                continue
            if wanted and split_metric(claim.metric)[0] != wanted[0]:
                continue
            text = (claim.source or "").strip()
            url = text if text.startswith(("http://", "https://")) and " " not in text else page
            entries.append(
                EvalResultEntry(
                    dataset_id=bench.dataset_id, task_id=bench.task_id, value=value, source_url=url,
                    source_name=("self-reported" + (f": {text}" if text and url == page else "")) if url else None,
                    notes=f"{claim.metric}, claimed" + (f", {claim.num_fewshot}-shot" if claim.num_fewshot is not None else ""),
                )
            )
        if entries:
            files[f".eval_results/{task}.yaml"] = yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)
    return files


def front_matter(manifest: Manifest, name: str, art: Artifact | None, kind: str, base_model: str | list[str] | None, evals: list) -> tuple[str, dict]:
    """(YAML text, dict) of the card's metadata: huggingface_hub's ModelCardData with the
    manifest's fields, `project.metadata` merged in (and validated by ModelCardData), and the
    model-index written one entry per (dataset, few-shot, source)."""
    from huggingface_hub import ModelCardData
    from huggingface_hub.utils import yaml_dump

    from ..errors import CardError

    p = manifest.project
    tags = set(p.tags) | ({"hubkit"} if p.hubkit_tag else set())
    tags |= {"lora", "peft"} if kind == "adapter" else ({"merge"} if kind == "merged" else set())
    kwargs: dict[str, Any] = {
        "license": p.license,
        "language": list(p.language) or None,
        "tags": sorted(tags) or None,
        "metrics": list(p.metrics) or None,
    }
    if p.license == "other":
        kwargs.update(license_name=p.license_name, license_link=p.license_link)
    if art is not None:
        kwargs["library_name"] = art.library_name or LIBRARY.get(kind)
        kwargs["pipeline_tag"] = art.pipeline_tag or p.pipeline_tag
        if base_model:
            kwargs["base_model"] = base_model
            kwargs["base_model_relation"] = art.hub_relation
        names = list(art.datasets) + (list(manifest.artifacts[art.adapter].datasets) if art.adapter and art.adapter in manifest.artifacts else [])
        ds = hub_datasets(manifest, names)
        if ds:
            kwargs["datasets"] = ds
    try:
        data = ModelCardData(**{k: v for k, v in kwargs.items() if v is not None}, **p.metadata)
    except (TypeError, ValueError) as exc:
        raise CardError(f"project.metadata: huggingface_hub's ModelCardData refuses it: {exc}") from None
    meta = data.to_dict()
    if evals:
        meta["model-index"] = model_index((art.model_name or art.repo_id or name) if art else name, evals)
    return yaml_dump(meta, sort_keys=False).strip(), meta
