"""`hubkit verify`: re-check a published model card's numbers by running them again.

SOURCE is a Hub repo (its README, and when hubkit published it, `eval/hubkit.json` with the eval
setups, claims and the run records behind the card) or a local README. From a plain card the
documented lm-eval command is parsed completely (`hubkit.lmeval_command`) with its pins and the
card's own claimed numbers (`hubkit.cardparse`). Then `hubkit eval` runs it (pinned environment,
the card's own load path first, fallback recorded) and every claimed number gets a verdict:
agrees (within 2 combined standard errors), disagrees, or not reproduced and why.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import EvalError, HubkitError
from .eval.claims import AGREE_K, claim_number, split_metric

Say = Callable[[str], None]


class VerifyError(HubkitError):
    """A card could not be verified (nothing to run, a source that cannot be read)."""


@dataclass
class VerifyRow:
    task: str
    metric: str
    claimed: float | str | None
    claimed_stderr: float | None
    reproduced: float | None
    stderr: float | None
    verdict: str  # agrees | disagrees | not reproduced
    why: str = ""
    strategy: str | None = None
    num_fewshot: int | None = None
    run_id: str | None = None
    source: str | None = None


@dataclass
class VerifyReport:
    source: str
    kind: str  # "hubkit" (published by hubkit) | "card" (a documented command)
    results: list[VerifyRow]
    found: list[str] = field(default_factory=list)
    guessed: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    versions: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    out: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.verdict == "agrees" for r in self.results)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def markdown(self) -> str:
        from .templating import render_template

        return render_template("verify/report.md.j2", r=self, k=AGREE_K, date=dt.date.today().isoformat())


# -- reading the source ---------------------------------------------------------------------------------


def _fetch(source: str, *, revision: str | None, endpoint: str | None, work: Path) -> tuple[str, Path, str | None]:
    """(card text, the folder holding it and any eval/ files, repo id or None)."""
    from .hub.client import looks_like_repo_id, resolve

    p = Path(source).expanduser()
    if p.is_dir():
        p = p / "README.md"
    if p.is_file():
        return p.read_text(encoding="utf-8"), p.parent, None
    if not looks_like_repo_id(source):
        raise VerifyError(f"{source}: no such README and not a Hub repo id", hint="Give a README.md (or its folder) or owner/name (with --endpoint for a local hub).")
    got = resolve(source, revision=revision, what="card", endpoint=endpoint, error=VerifyError, allow_patterns=("README.md", "eval/hubkit.json", "eval/data/**", "eval/*/record.json"))
    readme = got.path / "README.md"
    if not readme.is_file():
        raise VerifyError(f"{source}: the repo has no README.md")
    return readme.read_text(encoding="utf-8"), got.path, source


def _data_flags(flags: list[str]) -> dict[str, dict[str, str]]:
    """--data TASK:SPLIT=FILE (repeatable) -> {task: {split: file}}."""
    out: dict[str, dict[str, str]] = {}
    for flag in flags:
        try:
            left, file = flag.split("=", 1)
            task, split = left.split(":", 1)
        except ValueError:
            raise VerifyError(f"--data {flag}: expected TASK:SPLIT=FILE, e.g. arc_challenge:test=arc/test.jsonl") from None
        path = Path(file).expanduser()
        if not path.is_file():
            raise VerifyError(f"--data {flag}: {path} does not exist")
        out.setdefault(task, {})[split] = str(path.resolve())
    return out


# -- planning: an eval setup and claims ----------------------------------------------------------------


@dataclass
class _Plan:
    subject: str
    adapter: str | None  # Hub id or local folder
    base: str | None
    base_revision: str | None
    setups: dict[str, dict]
    claims: list[dict]
    found: list[str]
    guessed: list[str]
    documented: str | None = None


def _plan_from_slice(folder: Path, repo_id: str | None, data: dict) -> _Plan:
    sl = json.loads((folder / "eval" / "hubkit.json").read_text(encoding="utf-8"))
    art = sl["artifact"]
    subject = art["evaluated_as"]
    setups = {}
    for name, setup in sl["evals"].items():
        setup = dict(setup)
        if setup.pop("include_path", False):
            raise VerifyError(f"eval setup {name!r} uses its own task folder (include_path), which a published repo does not carry", hint="Verify it from the project's own manifest with `hubkit eval`.")
        files_for = {}
        for task, d in (setup.pop("data") or {}).items():
            files = {}
            for split, entry in d["files"].items():
                if task in data and split in data[task]:
                    files[split] = data[task][split]
                elif entry.get("path") and (folder / entry["path"]).is_file():
                    files[split] = str((folder / entry["path"]).resolve())
                else:
                    raise VerifyError(
                        f"eval setup {name!r}: {task}'s {split} data ({entry.get('name')}, sha256 {str(entry.get('sha256'))[:12]}...) was not published",
                        hint=f"Give a copy with --data {task}:{split}=FILE.",
                    )
            files_for[task] = {"format": d.get("format", "json"), "files": files, **({"subtask_column": d["subtask_column"]} if d.get("subtask_column") else {})}
        setup["data"] = files_for
        setups[name] = setup
    # the card's numbers: the published run records of this subject, and the manifest's claims of it
    claims = []
    for rec_file in sorted((folder / "eval").glob("*/record.json")):
        rec = json.loads(rec_file.read_text(encoding="utf-8"))
        if rec.get("subject") != subject or rec.get("status") != "ok":
            continue
        for row in rec.get("rows", []):
            if row.get("value") is None or (row.get("group") and not row.get("is_group")):
                continue
            metric = row["metric"] + ("" if row.get("filter") in (None, "none") else f",{row['filter']}")
            claims.append({"subject": subject, "task": row["task"], "metric": metric, "value": row["value"], "stderr": row.get("stderr"), "num_fewshot": row.get("num_fewshot"), "setup": rec.get("setup"), "source": f"published run {rec['run_id']}"})
    for c in sl.get("claims", []):
        if c.get("subject") == subject and not c.get("reference_only"):
            claims.append({**c, "source": c.get("source") or "the manifest's claim"})
    adapter = repo_id if art["kind"] == "adapter" else None
    return _Plan(subject, adapter, art.get("base_model") if isinstance(art.get("base_model"), str) else None, art.get("base_model_revision"), setups, claims, ["eval setups, claims and run records published by hubkit (eval/hubkit.json)"], [])


def _plan_from_card(text: str, repo_id: str | None, data: dict) -> _Plan:
    from .cardparse import claims_from_card, parse_card, pins_dict
    from .lmeval_command import to_eval_setup

    parsed = parse_card(text, repo_id=repo_id)
    if not parsed.commands:
        raise VerifyError("the card documents no lm-eval command to run", hint="`hubkit import` drafts a manifest from it; write the eval setup there and run `hubkit eval`.")
    doc = parsed.commands[0]
    cmd = doc.command
    if not cmd.tasks:
        raise VerifyError(f"the documented command (line {doc.location.line}) names no --tasks")
    pins = pins_dict(parsed.pins)
    setup = to_eval_setup(cmd, pins)
    found = [f"lm-eval command at line {doc.location.line} ({doc.location.kind}): " + "; ".join(cmd.explain())]
    if pins:
        found.append("pins: " + ", ".join(f"{k}{v}" for k, v in pins.items()))
    guessed = [f"{k}: {d.value} ({d.note})" for k, d in sorted(cmd.defaults.items())]
    for task, files in data.items():
        setup.setdefault("data", {})[task] = {"format": "json", "files": files}
    subject = "model"
    claims = []
    for c in claims_from_card(parsed):
        if not c.this_model or c.value is None or c.derived or c.reference_only:
            continue
        if c.metric_guessed:
            guessed.append(f"{c.task_display}: metric {c.metric} (the card does not say)")
        claims.append({"subject": subject, "task": c.task, "metric": c.metric or "acc", "value": c.value, "stderr": c.stderr, "num_fewshot": c.num_fewshot, "source": c.source, "unit": c.unit})
    found.append(f"{len(claims)} claimed number(s) of this model")
    ma = cmd.model_args
    return _Plan(subject, ma.peft, ma.pretrained, ma.revision, {"documented": setup}, claims, found, guessed, documented=cmd.command)


# -- running and judging -----------------------------------------------------------------------------


def _scale(claim: dict, reproduced: float | None) -> tuple[float | None, float | None, str]:
    """The claim on the reproduced number's scale: cards often write 62.03 for 0.6203."""
    value, se = claim.get("value"), claim.get("stderr")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, None, ""
    if reproduced is not None and 0 <= reproduced <= 1 and (claim.get("unit") == "%" or 1 < value <= 100):
        return value / 100, (se / 100 if se is not None else None), " (claimed in percent)"
    return float(value), se, ""


def verify(
    source: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    data: list[str] = (),
    env: str | None = None,
    strategies: list[str] | None = None,
    limit: int | float | None = None,
    out: str | Path | None = None,
    say: Say = lambda m: None,
) -> VerifyReport:
    """Re-run the numbers of the card at `source` and judge each claim. Returns the report (also
    written to OUT/report.md and OUT/report.json). Raises VerifyError when there is nothing to run."""
    from .eval import run_eval
    from .eval.claims import join
    from .hub.client import looks_like_repo_id, resolve
    from .manifest import load_manifest, repo_id_problem

    work = Path(out or Path.cwd() / "hubkit-verify").resolve()
    work.mkdir(parents=True, exist_ok=True)
    text, folder, repo_id = _fetch(source, revision=revision, endpoint=endpoint, work=work)
    flags = _data_flags(list(data))
    if (folder / "eval" / "hubkit.json").is_file():
        plan, kind = _plan_from_slice(folder, repo_id, flags), "hubkit"
    else:
        plan, kind = _plan_from_card(text, repo_id, flags), "card"
    if not plan.claims:
        raise VerifyError(f"{source}: the card states no number of its own model to check")
    say(f"verify {source}: {len(plan.claims)} claimed number(s), setups {', '.join(plan.setups)}")
    if not plan.adapter:
        raise VerifyError(f"{source}: the model evaluated is not a LoRA adapter (no peft= in the command)", hint="hubkit verify re-runs adapters on their base for now; evaluate full models with `hubkit eval`.")
    if not plan.base:
        raise VerifyError(f"{source}: the card does not say which base model the adapter goes on (pretrained=)")
    adapter_dir = plan.adapter
    if not Path(plan.adapter).expanduser().is_dir() and looks_like_repo_id(plan.adapter):
        adapter_dir = str(resolve(plan.adapter, revision=revision if repo_id == plan.adapter else None, what="adapter", endpoint=endpoint, error=VerifyError).path)
    elif not Path(plan.adapter).expanduser().is_dir():
        # before any environment is built: a card's local path is someone else's machine
        raise VerifyError(
            f"{source}: the adapter the card loads ({plan.adapter}) is neither a folder here nor a Hub repo id",
            hint="Point the card's peft= at the adapter's Hub id, or run from where that folder exists.",
        )
    # the manifest's own repo-id rule (huggingface_hub's), which also takes canonical ids ("gpt2")
    if repo_id_problem(plan.base) and not Path(plan.base).expanduser().is_dir():
        raise VerifyError(
            f"{source}: the base model the card loads ({plan.base}) is neither a folder here nor a Hub repo id",
            hint="Point the card's pretrained= at the base model's Hub id, or run from where that folder exists.",
        )
    setups = {}
    for name, setup in plan.setups.items():
        setup = {k: v for k, v in setup.items() if v is not None}
        setup.pop("artifacts", None)
        if env:
            setup["env"] = env
        if strategies:
            setup["strategies"] = list(strategies)
        setups[name] = setup
    manifest = {
        "project": {"name": f"verify {source}", "license": "unknown"},
        "artifacts": {plan.subject: {"kind": "adapter", "path": adapter_dir, "base_model": plan.base, **({"base_model_revision": plan.base_revision} if plan.base_revision else {})}},
        "evals": setups,
        "claims": [{k: v for k, v in c.items() if k in ("subject", "task", "metric", "value", "stderr", "num_fewshot", "setup", "source")} for c in plan.claims],
    }
    path = work / "hubkit.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    m = load_manifest(path)
    failure = None
    try:
        outcomes = run_eval(m, limit=limit, runs_dir=work / "runs", say=say, endpoint=endpoint, include_base=False)
    except EvalError as exc:
        failure, outcomes = str(exc), []
    records = [o.record for o in outcomes if o.record.ok]
    cells, _ = join(m, records, all_metrics=True)
    by_claim = {id(c.claim): c for c in cells if c.claim is not None and c.row is not None}
    rows = []
    for claim, raw in zip(m.claims, plan.claims):
        cell = by_claim.get(id(claim))
        metric, filt = split_metric(claim.metric)
        label = metric + (f" ({filt})" if filt else "")
        if cell is None or cell.row.value is None:
            ran = {(r.task, r.metric) for rec in records for r in rec.rows}
            why = failure or (f"{claim.task} did not run" if claim.task not in {t for t, _ in ran} else f"{claim.task} has no {label} result at {claim.num_fewshot}-shot")
            rows.append(VerifyRow(claim.task, label, claim.value, claim.stderr, None, None, "not reproduced", why, num_fewshot=claim.num_fewshot, source=claim.source))
            continue
        value, se, note = _scale(raw, cell.row.value)
        from .eval.claims import verdict as judge

        v = judge(cell.row.value, cell.row.stderr, value, se)
        rows.append(
            VerifyRow(
                claim.task, label, claim.value, claim.stderr, cell.row.value, cell.row.stderr, "agrees" if v.startswith("agrees") else "disagrees",
                v + note, cell.record.strategy, cell.num_fewshot, cell.record.run_id, claim.source,
            )
        )
    differences, versions = [], []
    for rec in records:
        for a in rec.attempts:
            if a.status != "ok":
                what = "was unavailable" if a.status == "unavailable" else "failed"
                differences.append(f"{rec.setup}: {a.strategy} {what} ({a.reason}); the numbers come from {rec.strategy}")
        if rec.limit is not None:
            differences.append(f"{rec.setup}: ran on the first {rec.limit} documents only (--limit)")
        if rec.data_overrides:
            differences.append(f"{rec.setup}: tasks read local copies of their data ({', '.join(rec.data_overrides)})")
        requested = (rec.env or {}).get("requested") or {}
        installed = (rec.env or {}).get("installed") or {}
        for pkg, spec in requested.items():
            versions.append({"package": pkg, "requested": spec, "installed": installed.get(pkg.replace("-", "_")) or installed.get(pkg)})
        if (rec.env or {}).get("kind") == "current" and requested:
            differences.append(f"{rec.setup}: ran in the current environment, not one built from the card's pins")
    report = VerifyReport(
        source=source + (f"@{revision}" if revision else ""), kind=kind, results=rows, found=plan.found, guessed=plan.guessed,
        differences=list(dict.fromkeys(differences)), versions=versions,
        runs=[{"run_id": r.run_id, "setup": r.setup, "strategy": r.strategy, "path": str(r.path)} for r in records], out=str(work),
    )
    (work / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    (work / "report.md").write_text(report.markdown())
    return report


def post_discussion(report: VerifyReport, repo_id: str, *, endpoint: str | None = None, token: str | None = None, say: Say = lambda m: None) -> str:
    """Open a discussion on `repo_id` whose text is the report; returns its URL. Refused (nothing
    sent) when the report holds anything shaped like a secret."""
    from huggingface_hub import HfApi

    from .secrets import scan_bytes

    text = report.markdown()
    found = scan_bytes(text.encode())
    if found:
        raise VerifyError(f"the report holds {found}: not posted", "Look at report.md; the card or a log it quotes carries a secret.")
    agree = sum(r.verdict == "agrees" for r in report.results)
    title = f"hubkit verify: {agree} of {len(report.results)} numbers agree"
    from .hub.client import hub_session

    with hub_session(endpoint, error=VerifyError):
        d = HfApi(endpoint=endpoint, token=token).create_discussion(repo_id, title, description=text)
    url = f"{(endpoint or 'https://huggingface.co').rstrip('/')}/{repo_id}/discussions/{d.num}"
    say(f"opened discussion #{d.num}: {url}")
    return url


def post_report(report: VerifyReport, repo_id: str, *, endpoint: str | None = None, token: str | None = None, say: Say = lambda m: None):
    """Open a pull request on `repo_id` adding the report (verify/<date>.md), through publish's
    safe path (plan, secret checks, one commit; the token is never shown)."""
    from .publish import LocalFile, Target, push

    name = f"verify/{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}.md"
    target = Target("verify", repo_id, [LocalFile(name, None, report.markdown().encode())], [], additive=True)
    cache = Path(report.out or ".") / ".hubkit" / "hash-cache.json"
    return push([target], cache_path=cache, endpoint=endpoint, token=token, create_pr=True, message=f"hubkit verify: {sum(r.verdict == 'agrees' for r in report.results)} of {len(report.results)} numbers agree", say=say)
