"""Paired comparison of two runs over their per-sample results.

Two runs on the same documents are not independent samples: comparing their stderrs
overstates the uncertainty of the difference. Aligning the samples by document hash and testing
the paired differences (bootstrap CI, exact McNemar for 0/1 metrics) gives the answer users
need: "B beats A by 0.6 pp, 95% CI [-0.4, 1.6], p = 0.3".

Runs are only compared when the comparison means something: the same few-shot and the same task
config (otherwise it is refused), with a warning when lm-eval versions or limits differ.
"""

from __future__ import annotations

import math
import random

from ..errors import EvalError
from .records import RunRecord, read_samples


def _value(sample: dict, metric: str) -> float | None:
    v = sample.get(metric)
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _key(sample: dict) -> str:
    # doc_hash identifies the document across runs and lm-eval versions; doc_id is the fallback.
    return str(sample.get("doc_hash") or sample.get("doc_id"))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value (binomial test on the discordant pairs)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(diffs: list[float], iterations: int, seed: int = 0) -> tuple[float, float, float]:
    """(low, high) 95% percentile CI of the mean paired difference, and a two-sided p-value for
    "no difference" (the share of resampled means on the other side of zero, doubled)."""
    n = len(diffs)
    rng = random.Random(seed)
    means = []
    for _ in range(iterations):
        s = 0.0
        for _ in range(n):
            s += diffs[rng.randrange(n)]
        means.append(s / n)
    means.sort()
    low = means[int(0.025 * (iterations - 1))]
    high = means[int(0.975 * (iterations - 1))]
    observed = sum(diffs) / n
    if observed == 0:
        p = 1.0
    else:
        other_side = sum(1 for m in means if (m <= 0 if observed > 0 else m >= 0))
        p = min(1.0, 2 * (other_side + 1) / (iterations + 1))
    return low, high, p


def _shots(rec: RunRecord, task: str) -> int | None:
    for row in rec.rows:
        if row.task == task:
            return row.num_fewshot
    return rec.num_fewshot


def _task_identity(rec: RunRecord, task: str):
    """What defines a task's documents and prompts, without machine paths."""
    facts = dict(rec.tasks.get(task) or {})
    facts.pop("config", None)
    override = facts.get("data_override")
    if isinstance(override, dict):
        facts["data_override"] = {
            "source": sorted(override.get("source_sha256", {}).values()),
            "files": sorted((v or {}).get("sha256", "") for v in (override.get("files") or {}).values() if isinstance(v, dict)),
        }
    facts.pop("lm_eval", None)
    return facts


def check_comparable(a: RunRecord, b: RunRecord, task: str) -> list[str]:
    """Warnings for a comparison that is meaningful but not like for like. Raises EvalError when
    the runs are not comparable on `task` (different few-shot or task config)."""
    sa, sb = _shots(a, task), _shots(b, task)
    if sa != sb:
        raise EvalError(
            f"task {task}: run {a.run_id} is {sa}-shot and run {b.run_id} is {sb}-shot; their per-document results are not comparable",
            hint="Compare runs of the same setup (or of setups with the same few-shot).",
        )
    if a.origin == b.origin == "local" and _task_identity(a, task) != _task_identity(b, task):
        raise EvalError(
            f"task {task}: runs {a.run_id} and {b.run_id} used different task configs or data",
            hint="Their documents or prompts differ: rerun both with the same setup.",
        )
    warnings = []
    if (a.lm_eval_version or "?") != (b.lm_eval_version or "?"):
        warnings.append(f"lm-eval versions differ ({a.lm_eval_version} vs {b.lm_eval_version}): prompts and defaults may differ")
    if a.limit != b.limit:
        warnings.append(f"limits differ ({a.limit} vs {b.limit}): only the documents both ran are compared")
    return warnings


def _select(samples: list[dict], task: str, filt: str | None) -> tuple[dict[str, dict], str]:
    filters = sorted({str(s.get("filter", "none")) for s in samples})
    if filt is None:
        if len(filters) > 1:
            raise EvalError(f"task {task}: its samples have several filters ({', '.join(filters)})", hint="Choose one with --filter.")
        filt = filters[0] if filters else "none"
    chosen = [s for s in samples if str(s.get("filter", "none")) == filt]
    if not chosen:
        raise EvalError(f"task {task}: no samples with filter {filt!r} (it has {', '.join(filters)})", hint="Choose one with --filter.")
    return {_key(s): s for s in chosen}, filt


def compare_runs(a: RunRecord, b: RunRecord, *, metric: str = "acc", filter: str | None = None, iterations: int = 10000, seed: int = 0) -> dict:
    """Compare run B against run A on every task both have per-sample results for.

    Raises EvalError when the runs share no task, a task shares no document, or the runs are not
    comparable (different few-shot or task config)."""
    tasks = sorted(set(a.samples_files) & set(b.samples_files))
    if not tasks:
        raise EvalError(f"runs {a.run_id} and {b.run_id} share no task with per-sample results")
    out = {"run_a": a.run_id, "run_b": b.run_id, "subject_a": a.subject, "subject_b": b.subject, "metric": metric, "tasks": [], "warnings": []}
    for task in tasks:
        warnings = check_comparable(a, b, task)
        out["warnings"] += [f"{task}: {w}" for w in warnings]
        sa, fa = _select(read_samples(a.samples_file(task)), task, filter)
        sb, fb = _select(read_samples(b.samples_file(task)), task, filter or fa)
        shared = sorted(set(sa) & set(sb))
        if not shared:
            raise EvalError(f"task {task}: runs {a.run_id} and {b.run_id} share no document (different data or prompts?)")
        va = [_value(sa[k], metric) for k in shared]
        vb = [_value(sb[k], metric) for k in shared]
        if any(v is None for v in va + vb):
            raise EvalError(f"task {task}: metric {metric!r} is missing from some samples", hint="Pick a per-sample metric with --metric (e.g. acc, acc_norm, exact_match).")
        diffs = [y - x for x, y in zip(va, vb)]
        n = len(shared)
        mean_a, mean_b = sum(va) / n, sum(vb) / n
        low, high, p_boot = paired_bootstrap(diffs, iterations, seed)
        binary = all(v in (0.0, 1.0) for v in va + vb)
        a_only = sum(1 for x, y in zip(va, vb) if x > y)
        b_only = sum(1 for x, y in zip(va, vb) if y > x)
        sd = math.sqrt(sum((d - (mean_b - mean_a)) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
        out["tasks"].append(
            {
                "task": task,
                "filter": fa,
                "n": n,
                "unmatched": len(set(sa) ^ set(sb)),
                "mean_a": mean_a,
                "mean_b": mean_b,
                "diff": mean_b - mean_a,
                "paired_stderr": sd / math.sqrt(n) if n else None,
                "ci95": [low, high],
                "p_bootstrap": p_boot,
                "binary": binary,
                "fraction": all(0.0 <= v <= 1.0 for v in va + vb),
                "a_only": a_only,
                "b_only": b_only,
                "p_mcnemar": mcnemar_exact(a_only, b_only) if binary else None,
            }
        )
    return out


def format_comparison(result: dict) -> str:
    lines = [f"B = {result['run_b']} ({result['subject_b']})", f"A = {result['run_a']} ({result['subject_a']})", f"metric: {result['metric']}"]
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    for t in result["tasks"]:
        lo, hi = t["ci95"]
        label = t["task"] + (f" ({t['filter']})" if t.get("filter") not in (None, "none") else "")
        if t["p_mcnemar"] is not None:
            test = f"McNemar p = {t['p_mcnemar']:.3g}"
            counts = f"A right/B wrong {t['a_only']}, B right/A wrong {t['b_only']}"
        else:
            test = f"bootstrap p = {t['p_bootstrap']:.3g}"
            counts = f"A higher on {t['a_only']} documents, B higher on {t['b_only']}"
        if t.get("fraction", True):  # a share: the difference reads best in percentage points
            diff, ci = f"{100 * t['diff']:+.2f} pp", f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pp"
        else:
            diff, ci = f"{t['diff']:+.4g}", f"[{lo:+.4g}, {hi:+.4g}]"
        lines.append(f"{label}: B - A = {diff} (A {t['mean_a']:.4f}, B {t['mean_b']:.4f}; 95% CI {ci}; {test}; n = {t['n']}; {counts})")
        if t["unmatched"]:
            lines.append(f"  note: {t['unmatched']} documents appear in only one run and were left out")
    return "\n".join(lines)
