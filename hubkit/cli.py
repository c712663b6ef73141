"""The `hubkit` command line: a thin layer over the library functions.

Results go to stdout (JSON with --json), progress and hints to stderr. Any HubkitError becomes
one message plus the next step, and a non-zero exit; HUBKIT_DEBUG=1 shows the traceback.
Heavy libraries (torch, transformers, peft, lm-eval, gradio) are imported inside commands,
so `hubkit --help` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import UsageError

MANIFEST_OPTION = click.option(
    "-m",
    "--manifest",
    default="hubkit.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Path of the hubkit manifest.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
ENDPOINT_OPTION = click.option(
    "--endpoint", envvar="HF_ENDPOINT", help="Hub URL (default: HF_ENDPOINT or huggingface.co); e.g. a local hub from `hubkit hub serve`."
)


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class _Carried(Exception):
    """Carries an OSError past click, which would turn any EPIPE (a Hub connection's too) into a
    silent `sys.exit(1)`; `main` unwraps it."""

    def __init__(self, exc: OSError):
        super().__init__(str(exc))
        self.exc = exc


class _HubkitGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            raise _Carried(exc) from exc


def _epilog() -> str:
    from .errortable import exit_codes_help

    return (
        "\b\nExit codes:\n" + exit_codes_help() + "\n\n"
        "Errors are one line naming the file, field, repo or port, and a hint with the next step. "
        "HUBKIT_DEBUG=1 adds the traceback."
    )


@click.group(cls=_HubkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=_epilog())
@click.version_option(__version__, prog_name="hubkit")
def cli() -> None:
    """Evaluate, merge, card and publish LoRA adapters and merged checkpoints.

    A typical day: `hubkit eval` reruns your pinned lm-eval setups, `hubkit card` renders the
    model cards from the results, `hubkit publish` pushes adapters, merged siblings, cards and
    run records to the Hub. Everything reads one manifest, hubkit.yaml (`hubkit init` writes a
    first one from your adapter). New here? `hubkit demo` runs the whole pipeline offline.
    """


# -- init / inspect / schema / validate -----------------------------------------------------


@cli.command()
@click.option("--adapter", "adapter", type=click.Path(file_okay=False, path_type=Path), help="LoRA adapter directory.")
@click.option("--from-command", "from_command", help="A documented lm-eval command (python -m lm_eval ..., lm_eval ..., lm-eval run ...) to turn into an eval setup.")
@click.option("--setup", "setup_name", default="documented", show_default=True, help="Name of the eval setup --from-command makes.")
@click.option("--merged", type=click.Path(file_okay=False, path_type=Path), help="Merged checkpoint directory (optional).")
@click.option("--name", help="Project name (default: the adapter directory's name).")
@click.option("--repo-id", help="Target Hub repo for the adapter, 'owner/name'.")
@click.option("--license", "license_", default="apache-2.0", show_default=True, help="Hub license id.")
@click.option("-o", "--out", default="hubkit.yaml", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
def init(adapter: Path | None, from_command: str | None, setup_name: str, merged: Path | None, name: str | None, repo_id: str | None, license_: str, out: Path, force: bool) -> None:
    """Write a starting hubkit.yaml from the facts in an adapter (and merged) directory, or from a
    documented lm-eval command (--from-command; into an existing manifest it prints the setup to
    paste under `evals:` instead of rewriting your file)."""
    from .init import init_manifest

    if from_command:
        from .importcard import init_from_command

        path, block, gaps = init_from_command(from_command, out, setup_name=setup_name, name=name, repo_id=repo_id, license=license_, force=force)
        for gap in gaps:
            _err(f"note: {gap}")
        if path is None:
            click.echo(block, nl=False)
            _err(f"{out} exists: paste the setup above under `evals:` (or pass --force to write a new manifest)")
        else:
            click.echo(str(path))
            _err("Review the TODO lines, then run `hubkit validate`.")
        return
    if adapter is None:
        raise click.UsageError("give --adapter DIR (or --from-command 'lm_eval ...')")

    path = init_manifest(adapter, merged=merged, name=name, repo_id=repo_id, license=license_, out=out, force=force)
    click.echo(str(path))
    _err("Review the TODO lines, then run `hubkit validate`.")


@cli.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--no-hash", is_flag=True, help="Skip the sha256 of each file (fast on big checkpoints).")
@JSON_OPTION
def inspect_cmd(path: Path, no_hash: bool, as_json: bool) -> None:
    """Report what an adapter or checkpoint directory, or GGUF files, contain, read from the files."""
    from .inspection import inspect_path
    from .report import format_facts

    facts = inspect_path(path, hash_files=not no_hash)
    if as_json:
        _print_json(facts.to_dict())
    else:
        click.echo(format_facts(facts))


@cli.command("import")
@click.argument("source")
@click.option("-o", "--out", default="hubkit.yaml", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
@click.option("--revision", help="Revision of a Hub repo's card.")
@ENDPOINT_OPTION
def import_cmd(source: str, out: Path, force: bool, revision, endpoint) -> None:
    """Draft a hubkit.yaml from an existing model card: SOURCE is a README.md, a folder holding
    one, or a Hub repo id. Metadata, prose sections, results tables and model-index (as claims
    with their sources) and documented lm-eval commands (as eval setups) are carried over; what the
    card does not say is listed as TODO, never guessed."""
    from .importcard import import_card

    path, todo = import_card(source, out, force=force, endpoint=endpoint, revision=revision)
    click.echo(str(path))
    for item in todo:
        _err(f"TODO: {item}")
    _err("Review the TODO lines, then `hubkit validate` and `hubkit card`.")


@cli.command()
@MANIFEST_OPTION
def validate(manifest: Path) -> None:
    """Check a manifest: every problem is listed with its file and field path.

    Beyond the schema: paths exist and stay inside the manifest's folder (unless absolute), and
    artifacts meant for the Hub name a Hub base model."""
    from .manifest import check_manifest, load_manifest

    m = load_manifest(manifest)
    for warning in check_manifest(m):
        _err(f"warning: {warning}")
    click.echo(
        f"{manifest}: ok ({len(m.artifacts)} artifacts, {len(m.evals)} eval setups, "
        f"{len(m.lineage)} lineage stages, {len(m.claims)} claims)"
    )


@cli.command()
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file instead of stdout.")
def schema(out: Path | None) -> None:
    """Print the manifest's JSON Schema (for editors and yaml-language-server)."""
    from .manifest import manifest_json_schema

    text = json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"
    if out:
        out.write_text(text)
        click.echo(str(out))
    else:
        click.echo(text, nl=False)


# -- pipeline commands ------------------------------------------------------------------------


@cli.command("eval")
@MANIFEST_OPTION
@click.option("--setup", help="Eval setup to run (default: every setup in the manifest).")
@click.option("--artifact", help="Evaluate only this adapter (the base is still evaluated unless --no-base).")
@click.option("--limit", type=float, help="Only the first N documents of each task (a fraction if < 1).")
@click.option("--env", "env_kind", type=click.Choice(["pinned", "current"]), help="Override the setup's environment.")
@click.option("--rerun", is_flag=True, help="Run even when an identical run is recorded.")
@click.option("--no-base", is_flag=True, help="Skip the base-model baseline run.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Where run records go (default: runs/ beside the manifest).")
@click.option("--executor", type=click.Choice(["local", "slurm", "hf-jobs"]), help="Where units run (default: scaleout.executor in the manifest, else local).")
@click.option("--gpus", type=click.IntRange(0), help="GPUs per unit (locally: one unit per free GPU; more than one: lm-eval's data parallelism).")
@click.option("--cpus", type=click.IntRange(1), help="CPU cores per unit.")
@click.option("--mem", "mem_gb", type=click.FloatRange(min=0, min_open=True), help="Memory per unit, GiB (Slurm --mem).")
@click.option("--time", "time_min", type=click.IntRange(1), help="Wall-time limit per unit, minutes.")
@click.option("--subjects-per-unit", type=click.IntRange(1), help="Subjects (base, adapters) per unit (default: all of a setup's).")
@click.option("--shards", "task_shards", type=click.IntRange(1), help="Split each setup's tasks into this many units.")
@click.option("--separate", is_flag=True, help="Run each subject in its own lm-eval process (default: a unit's subjects share one, the base loaded once).")
@click.option("--partition", help="Slurm partition.")
@click.option("--account", help="Slurm account.")
@click.option("--qos", help="Slurm QOS.")
@click.option("--flavor", help="HF Jobs hardware flavor (cpu-basic, a10g-small, a100-large, h200...).")
@click.option("--jobs-repo", help="HF Jobs: the dataset repo that carries inputs and run records (default: NAMESPACE/hubkit-jobs).")
@click.option("--poll-interval", type=click.FloatRange(min=0.1), help="Seconds between two looks at Slurm / HF Jobs units (default 10).")
@ENDPOINT_OPTION
@JSON_OPTION
def eval_cmd(manifest: Path, setup, artifact, limit, env_kind, rerun, no_base, runs_dir, executor, gpus, cpus, mem_gb, time_min,
             subjects_per_unit, task_shards, separate, partition, account, qos, flavor, jobs_repo, poll_interval, endpoint, as_json) -> None:  # fmt: skip
    """Rerun the manifest's pinned lm-eval setups and record every run.

    Each adapter is evaluated with the setup's strategies in order (default: 4bit-lora, then
    merged-fp16); when one fails (no CUDA, a bitsandbytes/driver mismatch, OOM) the next runs
    and the record says why. A setup's base and adapters share one process per load path
    (lm-eval imported and the base loaded once). Records land in runs/<run-id>/ with lm-eval's
    own results and samples plus provenance (command, requested vs installed versions, weight
    hashes, hardware). An identical earlier run is reused unless --rerun. A base given as a Hub
    id is fetched through huggingface_hub (or found in its cache) and pinned to its commit.

    \b
    Executors (units = a setup's subjects on a shard of its tasks):
      local    this machine; one unit per visible GPU (CUDA_VISIBLE_DEVICES)
      slurm    job arrays through submitit (--partition, --gpus, --time, --mem)
      hf-jobs  Hugging Face Jobs (--flavor); the token goes as a job secret
    A rerun after a failure or a kill runs only the units without records; `hubkit runs status`
    shows the matrix.
    """
    from .eval import run_eval, summarize
    from .manifest import load_manifest

    m = load_manifest(manifest)
    if limit is not None and limit >= 1:
        limit = int(limit)
    overrides = {
        "resources": {"gpus": gpus, "cpus": cpus, "mem_gb": mem_gb, "time_min": time_min},
        "subjects_per_unit": subjects_per_unit, "task_shards": task_shards, "one_process": False if separate else None,
        "slurm": {"partition": partition, "account": account, "qos": qos},
        "hf_jobs": {"flavor": flavor, "repo": jobs_repo}, "poll_interval": poll_interval,
    }  # fmt: skip
    outcomes = run_eval(
        m, setup=setup, artifact=artifact, limit=limit, env=env_kind, rerun=rerun,
        include_base=False if no_base else None, runs_dir=runs_dir, say=_err, endpoint=endpoint,
        executor=executor, scaleout=overrides,
    )  # fmt: skip
    records = [o.record for o in outcomes]
    if as_json:
        from .eval.summary import summary_rows

        _print_json({"runs": [{"subject": o.subject, "setup": o.record.setup, "run_id": o.record.run_id, "cached": o.cached, "path": str(o.record.path), "strategy": o.record.strategy, "fallback_reason": o.record.fallback_reason} for o in outcomes], "results": summary_rows(m, records)})
    else:
        from .eval.summary import format_summary

        click.echo(format_summary(summarize(m, records)))


@cli.group(invoke_without_command=True)
@MANIFEST_OPTION
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Run records folder (default: runs/ beside the manifest).")
@click.option("--all-rows", is_flag=True, help="Also list every subtask of a group (default: headlines only).")
@JSON_OPTION
@click.pass_context
def runs(ctx, manifest: Path, runs_dir: Path | None, all_rows: bool, as_json: bool) -> None:
    """List recorded eval runs: setup, subject, strategy, and each task's numbers.

    \b
    hubkit runs compare A B      paired test of two runs on their shared documents
    hubkit runs import FILE ...  record an lm-eval results file made elsewhere
    hubkit runs status           the eval matrix: units queued, running, done, failed
    """
    ctx.ensure_object(dict)
    ctx.obj["runs_dir"] = runs_dir or (manifest.resolve().parent / "runs")
    if ctx.invoked_subcommand is not None:
        return
    from .eval.records import RunStore
    from .report import format_runs, runs_json

    store = RunStore(ctx.obj["runs_dir"])
    records = store.records()
    if as_json:
        _print_json(runs_json(records, store.problems))
    elif not records and not store.problems:
        _err(f"no run records in {ctx.obj['runs_dir']}")
    else:
        click.echo(format_runs(records, all_rows=all_rows))
    for problem in store.problems:
        _err(f"warning: damaged record: {problem}")


@runs.command("status")
@JSON_OPTION
@click.pass_context
def runs_status(ctx, as_json: bool) -> None:
    """Show the eval matrix: each unit (a setup's subjects on a shard of its tasks), its state
    (queued, running, done, failed, cancelled), its job and how long it waited or ran.

    States are those the last `hubkit eval` watching the units saw; a unit whose watcher is
    gone is followed again by the next `hubkit eval`, which reruns only what did not finish.
    """
    from .eval.units import format_status, matrix_status

    status = matrix_status(ctx.obj["runs_dir"])
    if as_json:
        _print_json({"path": status["path"], "updated_at": status["updated_at"], "units": {u: s.to_json() for u, s in status["units"].items()}})
    else:
        click.echo(format_status(status))


@runs.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--metric", default="acc", show_default=True, help="Per-sample metric to compare (acc, acc_norm, exact_match...).")
@click.option("--filter", "filter_", help="The filter whose per-sample results to compare (e.g. strict-match for gsm8k); needed when a task has several.")
@click.option("--iterations", default=10000, show_default=True, help="Paired bootstrap resamples.")
@JSON_OPTION
@click.pass_context
def runs_compare(ctx, run_a: str, run_b: str, metric: str, filter_: str | None, iterations: int, as_json: bool) -> None:
    """Compare two runs on their shared tasks with paired tests over per-sample results.

    RUN_A and RUN_B are run ids (a unique prefix is enough) or record folders. For each task
    both ran, documents are matched by hash and the difference B - A gets a paired bootstrap
    95% CI (and an exact McNemar test for right/wrong metrics): stronger evidence than comparing
    two stderrs. Runs with different few-shot or task configs are refused; different lm-eval
    versions or limits are warned about.
    """
    from .eval.compare import compare_runs, format_comparison
    from .eval.records import RunStore

    store = RunStore(ctx.obj["runs_dir"])
    result = compare_runs(store.resolve(run_a), store.resolve(run_b), metric=metric, filter=filter_, iterations=iterations)
    if as_json:
        _print_json(result)
    else:
        click.echo(format_comparison(result))


@runs.command("import")
@click.argument("results_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--subject", required=True, help="Whose numbers these are: an artifact name, 'base', or a label.")
@click.option("--setup", required=True, help="The eval setup name to file them under (one of the manifest's, or a new label).")
@click.option("--samples", multiple=True, type=click.Path(path_type=Path), help="lm-eval's samples_*.jsonl (files or a folder), for paired comparisons. Repeatable.")
@JSON_OPTION
@click.pass_context
def runs_import(ctx, results_json: Path, subject: str, setup: str, samples, as_json: bool) -> None:
    """Record an lm-eval results file made elsewhere (any lm-eval since 0.3) as an imported run.

    The file is copied into a sealed record with the provenance it carries (lm-eval and
    transformers versions, model args, git hash, date); cards, `hubkit runs` and the Space show
    its numbers marked as imported.
    """
    from .eval.imports import import_results
    from .eval.records import RunStore

    record = import_results(RunStore(ctx.obj["runs_dir"]), results_json, subject=subject, setup=setup, samples=list(samples))
    if as_json:
        _print_json({"run_id": record.run_id, "path": str(record.path), "rows": [r.model_dump() for r in record.rows]})
    else:
        _err(f"imported {len(record.rows)} numbers from {results_json} (lm-eval {record.lm_eval_version})")
        click.echo(record.run_id)


@cli.command()
@click.argument("adapter")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder to write the merged checkpoint to.")
@click.option("--base", help="Base model folder or Hub id (default: the adapter's base_model_name_or_path).")
@click.option("--revision", help="Revision of a Hub base model.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default="float16", show_default=True, help="Dtype of the merged weights (the math is always float32).")
@click.option("--shard-size", default="5GB", show_default=True, help="Largest output shard, e.g. 5GB or 500MB.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@ENDPOINT_OPTION
@JSON_OPTION
def merge(adapter: str, out: Path, base, revision, dtype, shard_size, force, endpoint, as_json) -> None:
    """Fold a LoRA adapter into its base and write a self-contained checkpoint, shard by shard.

    ADAPTER is a peft LoRA folder or Hub id; a Hub id (adapter or base) is fetched through
    huggingface_hub's cache, so it also works offline once cached. The base is read one tensor at a time and every
    adapted weight becomes W + scale * (B @ A), so memory stays at a few tensors whatever the
    model size. The output (weights, config, generation config, tokenizer, and hubkit_merge.json
    recording what it was made from) appears at --out only when complete.

    \b
    Example:
      hubkit merge adapters/lora-full --base ./base --out merged/lora-full --dtype bfloat16
    """
    from .merge import plan_merge, run_merge

    plan = plan_merge(adapter, base, revision=revision, dtype=dtype, shard_size=shard_size, endpoint=endpoint)
    _err(f"merging {len(plan.pairs)} LoRA modules into {plan.base_dir} ({plan.bytes_in / 1e9:.2f} GB in, {plan.bytes_out / 1e9:.2f} GB out as {dtype}, {len(plan.shard_names)} shard(s))")
    from tqdm.auto import tqdm

    with tqdm(total=plan.bytes_in, unit="B", unit_scale=True, desc="merge", disable=as_json or None, file=sys.stderr) as bar:
        result = run_merge(plan, out, force=force, progress=bar.update)
    if as_json:
        _print_json({"out": str(result.out), "seconds": round(result.seconds, 2), "files": result.files, "lineage": result.lineage})
    else:
        _err(f"merged in {result.seconds:.1f}s")
        click.echo(str(result.out))


@cli.command()
@MANIFEST_OPTION
@click.option("--artifact", help="Render only this artifact's card (default: every artifact; a report card when there are none).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where cards go: OUT/<artifact>/README.md (default: cards/ beside the manifest).")
@click.option("--template-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Your templates, searched before hubkit's (override one partial, e.g. card/_usage_adapter.md.j2).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Run records to take reproduced numbers from (default: runs/ beside the manifest).")
@click.option("--check", is_flag=True, help="Write nothing; lint the cards and report any that are stale on disk.")
@click.option("--preview", is_flag=True, help="Also write preview.html beside each card: the card as the Hub shows it (metadata panel, tables, eval results), for a browser.")
@click.option("--serve", "serve_preview", is_flag=True, help="Serve the card's preview on 127.0.0.1 until Ctrl-C (one card: use --artifact when there are several).")
@JSON_OPTION
def card(manifest: Path, artifact, out, template_dir, runs_dir, check, preview, serve_preview, as_json) -> None:
    """Render model cards (README.md) from the manifest and the run records.

    Every number on a card comes from a recorded run or a declared claim. The front matter is
    Hub metadata (license, base_model and its relation, datasets, model-index with reproduced
    results only); the body has the results with ± stderr, Δ vs the baseline and claimed vs
    reproduced, adapter specs read from the files, lineage (table and mermaid graph), training
    data, usage, the exact reproduce command, limitations and citations.

    --check parses the front matter back with huggingface_hub and lints: missing or unknown
    license, local paths in base_model/datasets, numbers no run or claim backs, headline numbers of
    the records missing from the card, damaged records, stale cards. `hubkit publish` uploads the
    cards written here (and refuses them when stale or edited by hand): review them first, with
    --preview to see them as the Hub shows them.
    """
    from .card import card_dir, check_card, render_cards, write_cards
    from .errors import CardError
    from .manifest import load_manifest

    m = load_manifest(manifest)
    out = out or (m.root / "cards")
    cards = render_cards(m, artifact, runs_dir=runs_dir, template_dir=template_dir)
    if check:
        problems = [p for c in cards for p in check_card(m, c, card_dir(out, c) / "README.md")]
        if as_json:
            _print_json({"ok": not problems, "problems": problems, "cards": [c.name for c in cards]})
        if problems:
            raise CardError(f"{len(problems)} problem(s) in {len(cards)} card(s):\n  " + "\n  ".join(problems), hint="Fix the manifest (or templates), then run `hubkit card`.")
        if not as_json:
            _err(f"{len(cards)} card(s) ok and up to date in {out}")
        return
    damaged = cards[0].damaged if cards else []
    if damaged:  # its numbers would silently drop off the cards
        raise CardError(
            f"{damaged[0]}; no card was written" + (f" (and {len(damaged) - 1} more damaged record(s))" if len(damaged) > 1 else ""),
            hint=f"Run records are read-only once written: restore the file, or move the record out of {runs_dir or m.root / 'runs'} and run `hubkit eval` again.",
        )
    if serve_preview and len(cards) > 1:
        raise CardError("--serve shows one card at a time", hint=f"Add --artifact NAME (one of {', '.join(c.name for c in cards)}).")
    paths = write_cards(cards, out, template_dir=template_dir)
    previews = []
    if preview or serve_preview:
        from .hub.pages import write_preview

        previews = [write_preview(p) for p in paths]
    if as_json:
        _print_json({"cards": [{"name": c.name, "kind": c.kind, "path": str(p), "chart": c.chart is not None, "preview": str(v) if previews else None} for c, p, v in zip(cards, paths, previews or paths)]})
    else:
        for p in previews or paths:
            click.echo(str(p))
    if serve_preview:
        from .hub.pages import preview_server

        server = preview_server(paths[0])
        click.echo(server.url)
        _err("serving the card preview on loopback; Ctrl-C stops it (the page re-reads the card on reload)")
        try:
            import threading

            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@cli.command()
@click.argument("source")
@click.option("--revision", help="Revision of a Hub repo's card.")
@ENDPOINT_OPTION
@click.option("--data", multiple=True, metavar="TASK:SPLIT=FILE", help="Local data for a task whose Hub dataset cannot be reached (repeatable), e.g. arc_challenge:test=arc/test.jsonl.")
@click.option("--env", "env_kind", type=click.Choice(["pinned", "current"]), help="Run in an environment built from the card's pins (default) or in this one.")
@click.option("--strategies", help="Load strategies to try, comma-separated (default: the card's own load path first, then merged-fp16).")
@click.option("--limit", type=float, help="Only the first N documents of each task (a fraction if < 1): a quick, partial check.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where the runs and report.md / report.json go (default: ./hubkit-verify).")
@click.option("--open-pr", is_flag=True, help="Open a pull request on the repo adding the report as verify/<time>.md (token from HF_TOKEN or `hf auth login`).")
@click.option("--discussion", is_flag=True, help="Open a discussion on the repo whose text is the report (token from HF_TOKEN or `hf auth login`).")
@JSON_OPTION
def verify(source: str, revision, endpoint, data, env_kind, strategies, limit, out, open_pr, discussion, as_json) -> None:
    """Re-check a published model card: run its numbers again and judge each claim.

    SOURCE is a Hub repo id (a repo hubkit published carries its eval setups and run records) or
    a local README.md (its documented lm-eval command, pins and claimed numbers are read). The
    eval runs as `hubkit eval` would: pinned environment, the card's own load path first,
    fallback recorded. Each claimed number: reproduced ± stderr and a verdict (agrees within 2
    combined standard errors / disagrees / not reproduced and why). Exit code 0 when every
    number agrees, 1 otherwise.
    """
    from .hub.client import looks_like_repo_id
    from .verify import post_discussion, post_report
    from .verify import verify as run_verify

    if (open_pr or discussion) and not looks_like_repo_id(source):
        raise click.UsageError(f"--{'open-pr' if open_pr else 'discussion'} needs SOURCE to be a Hub repo id, not {source}")
    if limit is not None and limit >= 1:
        limit = int(limit)
    report = run_verify(
        source, revision=revision, endpoint=endpoint, data=list(data), env=env_kind,
        strategies=[s.strip() for s in strategies.split(",")] if strategies else None, limit=limit, out=out,
        say=(lambda _m: None) if as_json else _err,
    )
    if as_json:
        _print_json(report.to_dict())
    else:
        click.echo(report.markdown())
        _err(f"report: {Path(report.out) / 'report.md'}")
    if open_pr:
        post_report(report, source, endpoint=endpoint, say=_err)
    if discussion:
        post_discussion(report, source, endpoint=endpoint, say=_err)
    if not report.ok:
        click.get_current_context().exit(1)


@cli.group()
def hub() -> None:
    """A local Hub-compatible server (loopback) for offline publishing, tests and demos."""


@hub.command("serve")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("hubkit-hub"), show_default=True, help="Where repos are stored.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (0: any free port).")
@click.option("--token", "token_arg", hidden=True, help="Refused: a token on the command line shows in the process list.")
def hub_serve(root: Path, port: int, token_arg: str | None) -> None:
    """Serve a local Hub on 127.0.0.1: the API the huggingface_hub client uses, and the Hub's
    pages (model cards, files, commits) for a browser.

    Point clients at it with HF_ENDPOINT=http://127.0.0.1:PORT and HF_HUB_DISABLE_XET=1, or
    use `hubkit publish --endpoint http://127.0.0.1:PORT`. With HUBKIT_HUB_TOKEN set in its
    environment, every request must carry that token (clients: HF_TOKEN; browsers: /login).
    """
    from .hub.server import serve

    if token_arg is not None:
        raise UsageError(
            "--token is no longer accepted: a token on the command line is visible to every user in the process list",
            hint="Set HUBKIT_HUB_TOKEN in the hub's environment instead, and replace the token you passed.",
        )
    token = os.environ.get("HUBKIT_HUB_TOKEN") or None

    def ready(url: str) -> None:
        _err(f"local hub on {url} (data in {root}{', token required' if token else ''}); Ctrl-C stops it")

    serve(root, port=port, token=token, on_ready=ready)


def _print_push(result, dry_run: bool, as_json: bool) -> None:
    """What publish and space deploy print: the plans as JSON, or one `repo<TAB>commit` line per repo."""
    if as_json:
        _print_json({"dry_run": dry_run, "plans": [p.to_dict() for p in result.plans], "commits": result.commits, "tags": result.tags})
    elif not dry_run:
        for repo, sha in result.commits.items():
            click.echo(f"{repo}\t{sha or 'unchanged'}")


@cli.command()
@MANIFEST_OPTION
@click.option("--artifact", help="Publish only this artifact (default: every artifact with a repo_id).")
@click.option("--dry-run", is_flag=True, help="Print the plan (added / changed / unchanged / deleted, bytes to send) and stop.")
@ENDPOINT_OPTION
@click.option("--private", is_flag=True, help="Create missing repos as private.")
@click.option("--revision", default="main", show_default=True, help="Branch to commit to.")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--message", help="Commit message (default names the artifact and its run ids).")
@click.option("--allow-pickle", is_flag=True, help="Allow .bin/.pt/.pkl weights (refused by default: unpickling runs code).")
@click.option("--force", is_flag=True, help="Overwrite a README that was edited on the Hub since hubkit last published it.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Run records folder (default: runs/ beside the manifest).")
@JSON_OPTION
@click.option("--cards-dir", type=click.Path(file_okay=False, path_type=Path), help="Where `hubkit card` wrote the cards (default: cards/ beside the manifest).")
def publish(manifest: Path, artifact, dry_run, endpoint, private, revision, create_pr, message, allow_pickle, force, runs_dir, cards_dir, as_json) -> None:
    """Push adapters, merged siblings, cards and run records to the Hub: a plan, then one commit per repo.

    Each repo gets the files a loader needs (adapter or checkpoint, tokenizer), the README that
    `hubkit card` renders, and the run records behind its numbers under eval/. Files are compared
    with the remote first; unchanged files are not sent, and nothing changed means no commit.
    Secrets and pickles are refused, remote files hubkit did not put there are never deleted, and
    a README edited on the Hub is not overwritten without --force. The token comes from HF_TOKEN
    or `hf auth login` and is never printed.
    """
    from .manifest import load_manifest
    from .publish import publish as run_publish

    m = load_manifest(manifest)
    result = run_publish(
        m, artifact=artifact, endpoint=endpoint, dry_run=dry_run, private=private, revision=revision, create_pr=create_pr,
        message=message, allow_pickle=allow_pickle, force=force, runs_dir=runs_dir, cards_dir=cards_dir, say=(lambda _m: None) if as_json else _err,
    )
    _print_push(result, dry_run, as_json)


@cli.group()
def space() -> None:
    """The Gradio Space that compares the manifest's adapters side by side.

    One base model with every adapter loaded by name; each request is one batch with a row per
    column (peft's adapter_names), so N adapters cost one base plus N small adapters. Tabs:
    Generate (streamed columns, word diff vs base), Multiple choice (lm-eval-style scoring),
    Results (the run records), About (links, loading snippets, export).

    \b
    hubkit space build     write the Space folder (app, config, requirements, README)
    hubkit space serve     run it on 127.0.0.1 with the local weights
    hubkit space deploy    push it to a Space repo (one commit, like publish)
    """


@space.command("build")
@MANIFEST_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder to write (default: space/ beside the manifest).")
@click.option("--local", is_flag=True, help="Also name the local folders of the base and adapters (for serving on this machine; never deployed).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Run records for the Results tab (default: runs/ beside the manifest).")
@ENDPOINT_OPTION
@JSON_OPTION
def space_build(manifest: Path, out, local, runs_dir, endpoint, as_json) -> None:
    """Write a self-contained Space folder: app.py, engine.py, space_config.json (base and
    adapters with repo ids and pinned revisions, results, examples), requirements.txt and a
    README whose front matter is the Space's metadata (sdk, models, license)."""
    from .manifest import load_manifest
    from .space_build import build_space

    b = build_space(load_manifest(manifest), out, local=local, runs_dir=runs_dir, endpoint=endpoint)
    if as_json:
        _print_json({"out": str(b.out), "files": b.files, "models": [m["repo_id"] for m in [b.config["base"], *b.config["adapters"]]]})
    else:
        click.echo(str(b.out))


@space.command("serve")
@MANIFEST_OPTION
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to build the folder it serves (default: .hubkit/space-local beside the manifest).")
@click.option("--seconds", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Run records for the Results tab.")
def space_serve(manifest: Path, port, out, seconds, runs_dir) -> None:
    """Build the Space with the local weights and serve it on 127.0.0.1 (loopback only)."""
    from .manifest import load_manifest
    from .space_build import build_space, serve_space

    m = load_manifest(manifest)
    b = build_space(m, out or m.root / ".hubkit" / "space-local", local=True, runs_dir=runs_dir)
    _err(f"starting the Space ({len(b.config['adapters'])} adapters + base) ...")
    served = serve_space(b.out, port=port)
    click.echo(served.url)
    _err("serving; Ctrl-C stops it" if seconds is None else f"serving for {seconds:g}s")
    served.wait(seconds)


@space.command("deploy")
@MANIFEST_OPTION
@click.option("--repo-id", help="Space repo, owner/name (default: space.repo_id in the manifest).")
@ENDPOINT_OPTION
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--private", is_flag=True, default=None, help="Create the Space private.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Run records for the Results tab.")
@JSON_OPTION
def space_deploy(manifest: Path, repo_id, endpoint, dry_run, private, runs_dir, as_json) -> None:
    """Build the Space (repo ids only, no local paths) and push it to a Gradio Space repo in one
    commit, through the same plan and safety checks as `hubkit publish`."""
    from .manifest import load_manifest
    from .space_build import deploy_space

    result = deploy_space(
        load_manifest(manifest), repo_id=repo_id, endpoint=endpoint, dry_run=dry_run, private=private, runs_dir=runs_dir,
        say=(lambda _m: None) if as_json else _err,
    )
    _print_push(result, dry_run, as_json)


@cli.command()
@click.option(
    "--workdir",
    default="hubkit-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo world and every output go.",
)
@click.option("--rebuild", is_flag=True, help="Rebuild the demo world even if it exists.")
@click.option("--serve-seconds", type=float, help="Serve the hub and the Space this long at the end (default: until Ctrl-C; 0 skips serving).")
@click.option("--hub-port", type=int, default=8765, show_default=True, help="Port of the demo's local hub on 127.0.0.1 (0: any free port; a busy port falls back to a free one).")
def demo(workdir: Path, rebuild: bool, serve_seconds, hub_port: int) -> None:
    """Build a tiny offline world (model, adapters, data) and run the whole pipeline on it:
    inspect, eval (4-bit + LoRA with fallback), merge, card, publish to a local hub, and the
    side-by-side Space. At the end the hub (open the printed repo URLs) and the Space keep
    serving on 127.0.0.1 until Ctrl-C."""
    from .demo.pipeline import run_demo

    run_demo(workdir, rebuild=rebuild, say=_err, out=click.echo, serve_seconds=serve_seconds, hub_port=hub_port)


# -- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs one command and returns its exit code (and exits with it when
    `argv` is None, as the `hubkit` script calls it).

    Every exception ends here and goes through `hubkit.errortable`: one `error:` line per
    problem naming the file, field, repo or port, a `hint:` with the next step, and an exit code
    from its `EXIT_CODES`; never a traceback unless HUBKIT_DEBUG=1, never a token."""
    from .errortable import EXIT_INTERRUPTED
    from .secrets import redact_text

    try:
        # without standalone mode, click returns the code a command exits with (ctx.exit)
        rv = cli.main(args=argv, prog_name="hubkit", standalone_mode=False)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except _Carried as carried:
        code = _report(carried.exc, own_process=argv is None)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        _err("interrupted")
        code = EXIT_INTERRUPTED
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "hubkit"
        _err(f"error: {redact_text(exc.format_message())}")
        _err(f"hint: `{command} --help` lists the arguments and options.")
        code = exc.exit_code
    except click.ClickException as exc:
        _err(f"error: {redact_text(exc.format_message())}")
        code = exc.exit_code
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one place every error is explained
        code = _report(exc, own_process=argv is None)
    if argv is None:
        sys.exit(code)
    return code


def _report(exc: BaseException, *, own_process: bool) -> int:
    """Print `exc` as the error table explains it (with a redacted traceback under
    HUBKIT_DEBUG=1) and return its exit code."""
    from .errortable import EXIT_BROKEN_PIPE, debug_enabled, debug_traceback, explain, is_stdout_gone

    if is_stdout_gone(exc):
        # `hubkit runs | head`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's last flush does not complain (only when this is the whole process).
        if own_process:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    explained = explain(exc)
    if debug_enabled():
        sys.stderr.write(debug_traceback(exc))
    sys.stderr.write(explained.render())
    sys.stderr.flush()
    return explained.exit_code


if __name__ == "__main__":
    main()
