"""lm-eval results files of every version, read into typed result rows.

One reader for the results JSON that lm-evaluation-harness writes, from 0.3.x to 0.4.13:

- 0.3.x: metric keys have no filter (`"acc"`, `"acc_stderr"`), few-shot is one global
  `config.num_fewshot`, `config.model_args` is a string, there are no groups.
- 0.4.x: keys are `"metric,filter"` (`"exact_match,strict-match"`), `n-shot`, `n-samples`,
  `higher_is_better`, `configs`; groups carry a headline aggregated from their subtasks, listed in
  `groups` (and, up to 0.4.2, inside `results` too), with `group_subtasks` from 0.4.1 on.

Nothing is invented: a group row exists only when lm-eval computed it; a number that is NaN or
not a number becomes a row with no value and the reason, never a value on a card. Group few-shot
is taken from its subtasks, because lm-eval reports groups as 0-shot in `n-shot` whatever ran.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Metrics where lower is better, for files that carry no `higher_is_better` (0.3.x).
LOWER_IS_BETTER = frozenset({"perplexity", "ppl", "word_perplexity", "byte_perplexity", "bits_per_byte", "ter", "mse", "mae", "rmse", "loss"})
# Keys of a task's results entry that are not metrics.
_NOT_METRICS = frozenset({"alias", "name", "samples", "sample_len", "sample_count", "original", "effective", " ", "task", "group"})
_STDERR = re.compile(r"^(?P<metric>.+)_stderr(?:,(?P<filter>.*))?$")


class ResultRow(BaseModel):
    """One number lm-eval reported: a task's (or group's) metric under one filter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(description="Task or group name as reported (local-data copies under their original name).")
    metric: str
    filter: str = "none"
    value: float | None = Field(description="None when the file has no usable number (see `unavailable`).")
    stderr: float | None = None
    unavailable: str | None = Field(None, description="Why there is no value (NaN, 'N/A', not a number).")
    n: int | None = Field(None, description="Documents the number was computed on (lm-eval's effective n).")
    num_fewshot: int | None = None
    higher_is_better: bool | None = None
    group: str | None = Field(None, description="The group this task's row is part of (its immediate parent).")
    is_group: bool = Field(False, description="This row is a group's aggregate (its headline).")
    alias: str | None = None
    version: str | None = Field(None, description="The task config's version.")
    local_data: bool = False

    @property
    def metric_label(self) -> str:
        """'acc', or 'exact_match (strict-match)' when a filter other than none applies."""
        return self.metric if self.filter in ("none", "", None) else f"{self.metric} ({self.filter})"

    @property
    def key(self) -> str:
        """lm-eval's own key: 'acc,none'."""
        return f"{self.metric},{self.filter}"


def _number(value: Any) -> tuple[float | None, str | None]:
    """(value, reason) from what lm-eval wrote: a number, a string of one, 'N/A', NaN..."""
    if isinstance(value, bool):
        return float(value), None
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            return None, f"{value!r} in the results file"
        return float(value), None
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            return None, f"not a number in the results file: {value!r}"
        return (x, None) if math.isfinite(x) else (None, f"{value!r} in the results file")
    if value is None:
        return None, "no value in the results file"
    return None, f"not a number in the results file ({type(value).__name__})"


def _int(value: Any) -> int | None:
    x, _ = _number(value)
    return int(x) if x is not None else None


def detect_version(data: dict) -> str:
    """The lm-eval version that wrote `data`: its own field (0.4.9+), else a range from the keys."""
    for key in ("lm_eval_version",):
        if isinstance(data.get(key), str):
            return data[key]
    results = data.get("results") or {}
    keys = [k for metrics in results.values() if isinstance(metrics, dict) for k in metrics if k != "alias"]
    if keys and not any("," in k for k in keys):
        return "0.3"
    if "group_subtasks" in data:
        return "0.4.1+"
    return "0.4"


def _parents(data: dict, groups: set[str]) -> dict[str, str]:
    """task -> the group it belongs to, from `group_subtasks` (0.4.1+) or the configs' `group`."""
    parent: dict[str, str] = {}
    for group, subtasks in (data.get("group_subtasks") or {}).items():
        for sub in subtasks or []:
            parent.setdefault(sub, group)
    for task, cfg in (data.get("configs") or {}).items():
        if task in parent or not isinstance(cfg, dict):
            continue
        named = cfg.get("group")
        for g in named if isinstance(named, list) else [named]:
            if isinstance(g, str) and g in groups and g != task:
                parent[task] = g
                break
    return parent


def parse_results(data: dict, *, local_name=None) -> list[ResultRow]:
    """Every metric of every task and group in an lm-eval results JSON, as ResultRows.

    `local_name(name) -> original` maps hubkit's local-data task names back to the task they
    stand for. Raises ValueError when `data` is not an lm-eval results file."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError("not an lm-eval results file: no 'results' mapping")
    local_name = local_name or (lambda n: n)
    results: dict = data["results"]
    group_entries: dict = dict(data.get("groups") or {})
    # group_subtasks also lists every plain task, with no subtasks
    groups = set(group_entries) | {g for g, subs in (data.get("group_subtasks") or {}).items() if subs}
    parent = _parents(data, groups)
    n_shot = data.get("n-shot") or {}
    n_samples = data.get("n-samples") or {}
    versions = data.get("versions") or {}
    higher = data.get("higher_is_better") or {}
    configs = data.get("configs") or {}
    old_fewshot = (data.get("config") or {}).get("num_fewshot") if isinstance(data.get("config"), dict) else None

    def leaves(name: str) -> list[str]:
        subs = (data.get("group_subtasks") or {}).get(name)
        if subs is None:
            subs = [t for t, p in parent.items() if p == name]
        out = []
        for s in subs:
            out += leaves(s) if s in groups else [s]
        return out

    def fewshot(task: str) -> int | None:
        if task in groups:
            shots = {fewshot(t) for t in leaves(task)}
            return shots.pop() if len(shots) == 1 else None  # mixed or unknown: not stated
        if task in n_shot:
            return _int(n_shot[task])
        cfg = configs.get(task)
        if isinstance(cfg, dict) and cfg.get("num_fewshot") is not None:
            return _int(cfg["num_fewshot"])
        return _int(old_fewshot)

    def count(task: str) -> int | None:
        if task in groups:
            ns = [count(t) for t in leaves(task)]
            return sum(ns) if ns and all(n is not None for n in ns) else None
        entry = n_samples.get(task)
        return _int(entry.get("effective")) if isinstance(entry, dict) else None

    ordered = list(results) + [g for g in group_entries if g not in results]
    rows: list[ResultRow] = []
    for name in ordered:
        metrics = group_entries.get(name) if name in group_entries else results.get(name)
        if not isinstance(metrics, dict):
            continue
        original = local_name(name)
        is_group = name in groups
        stderrs: dict[tuple[str, str], Any] = {}
        values: list[tuple[str, str, Any]] = []
        for key, value in metrics.items():
            if key in _NOT_METRICS or isinstance(value, (dict, list)):
                continue
            metric, _, filt = key.partition(",")
            filt = filt or "none"
            m = _STDERR.match(key)
            if m:
                stderrs[(m["metric"], m["filter"] or "none")] = value
                continue
            values.append((metric, filt, value))
        hib = higher.get(name) or {}
        for metric, filt, value in values:
            x, reason = _number(value)
            se, _ = _number(stderrs.get((metric, filt))) if (metric, filt) in stderrs else (None, None)
            h = hib.get(metric) if isinstance(hib, dict) else None
            if not isinstance(h, bool):
                h = False if metric in LOWER_IS_BETTER else None
            version = versions.get(name)
            rows.append(
                ResultRow(
                    task=original,
                    metric=metric,
                    filter=filt,
                    value=x,
                    stderr=se,
                    unavailable=reason,
                    n=count(name),
                    num_fewshot=fewshot(name),
                    higher_is_better=h,
                    group=local_name(parent[name]) if name in parent else None,
                    is_group=is_group,
                    alias=(metrics.get("alias") or "").strip(" -") or None,
                    version=None if version is None else str(version),
                    local_data=original != name,
                )
            )
    return rows


def file_facts(data: dict) -> dict:
    """The provenance an lm-eval results file carries about itself (for imported runs)."""
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model_args = config.get("model_args")
    return {
        "lm_eval_version": detect_version(data),
        "model": config.get("model"),
        "model_args": model_args if isinstance(model_args, (str, dict)) or model_args is None else str(model_args),
        "model_name": data.get("model_name") or config.get("model_name"),
        "model_sha": config.get("model_sha") or data.get("model_sha"),
        "git_hash": data.get("git_hash"),
        "date": data.get("date"),
        "transformers_version": data.get("transformers_version"),
        "batch_size": config.get("batch_size"),
        "limit": config.get("limit"),
        "num_fewshot": config.get("num_fewshot"),
        "tasks": sorted((data.get("results") or {}).keys()),
    }
