"""`hubkit import` and `hubkit init --from-command`: manifests drafted from what others wrote.

An existing model card (a README on disk, or a Hub repo's) becomes a manifest draft: metadata,
prose sections, its tables and model-index as claims with their sources, documented lm-eval
commands as eval setups. A documented lm-eval command becomes an eval setup. The readers are
`hubkit.cardparse` and `hubkit.lmeval_command`; this module fetches, writes and checks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .errors import HubkitError, ManifestError
from .manifest import load_manifest

_REPO = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _write_checked(text: str, out: Path, force: bool) -> Path:
    """Write a manifest only if it validates (written aside, checked, renamed)."""
    if out.exists() and not force:
        raise HubkitError(f"{out}: already exists", hint="Pass --force to overwrite it, or -o another path.", path=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_manifest(tmp)
    except ManifestError as exc:
        tmp.unlink()
        raise HubkitError(f"the draft for {out} does not validate: {exc}", hint="This is a bug in hubkit's card reader; please report it with the card.") from None
    tmp.replace(out)
    return out


def read_source(source: str, *, endpoint: str | None = None, revision: str | None = None) -> tuple[str, str]:
    """(card text, where it came from) for a README path, a folder holding one, or a Hub repo id."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "README.md"
    if path.is_file():
        try:
            return path.read_bytes().decode("utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise HubkitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if _REPO.match(source) and not path.exists():
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        from .hub.client import hub_session

        with hub_session(endpoint, error=HubkitError):
            try:
                local = hf_hub_download(source, "README.md", revision=revision, endpoint=endpoint)
            except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
                raise HubkitError(f"{source}: no such repo or revision on {endpoint or 'the Hub'} ({type(exc).__name__})") from None
            except EntryNotFoundError:
                raise HubkitError(f"{source}: the repo has no README.md") from None
        return Path(local).read_text(encoding="utf-8"), f"{source}" + (f"@{revision}" if revision else "")
    raise HubkitError(f"{source}: no such file, folder or Hub repo id", hint="Give a README.md, a folder holding one, or owner/name (with --endpoint for a local hub).")


def import_card(source: str, out: str | Path = "hubkit.yaml", *, force: bool = False, endpoint: str | None = None, revision: str | None = None) -> tuple[Path, list[str]]:
    """Draft a manifest from a model card. Returns (the manifest written, the TODO list: what
    the card does not say and hubkit would not guess)."""
    from .cardparse import manifest_draft, parse_card, render_draft_yaml

    text, where = read_source(source, endpoint=endpoint, revision=revision)
    repo_id = source if _REPO.match(source) and not Path(source).exists() else None
    parsed = parse_card(text, repo_id=repo_id)
    draft = manifest_draft(parsed)
    path = _write_checked(render_draft_yaml(draft, where), Path(out), force)
    return path, list(draft.todo)


def setup_from_command(command: str, *, pins: dict[str, str] | None = None) -> tuple[dict, dict, list[str]]:
    """(eval setup, what the command says of the model, what a setup cannot hold) for a
    documented lm-eval command. Raises CommandError for something that is not one."""
    from .lmeval_command import artifact_hints, eval_setup_gaps, parse_lm_eval_command, to_eval_setup

    cmd = parse_lm_eval_command(command)
    return to_eval_setup(cmd, pins), artifact_hints(cmd), eval_setup_gaps(cmd, pins)


def init_from_command(command: str, out: str | Path = "hubkit.yaml", *, setup_name: str = "documented", name: str | None = None, repo_id: str | None = None, license: str = "apache-2.0", force: bool = False) -> tuple[Path | None, str, list[str]]:
    """A manifest whose eval setup is the documented command (and whose adapter is its `peft=`).

    With an existing manifest at `out` (and no --force) nothing is written: the setup's YAML is
    returned for the user to paste under `evals:` (their file, comments included, stays theirs).
    Returns (path written or None, the setup's YAML, notes on what the setup cannot hold)."""
    setup, model, gaps = setup_from_command(command)
    block = yaml.safe_dump({setup_name: setup}, sort_keys=False, allow_unicode=True, width=100)
    out = Path(out)
    if out.exists() and not force:
        return None, block, gaps
    adapter = model.get("adapter")
    base = model.get("base_model")
    art_name = re.sub(r"[^a-z0-9]+", "-", (adapter or base or "model").rsplit("/", 1)[-1].lower()).strip("-") or "model"
    artifact: dict = {"kind": "adapter" if adapter else "full", "path": adapter if adapter and Path(adapter).expanduser().exists() else art_name}
    if repo_id or (adapter and _REPO.match(adapter)):
        artifact["repo_id"] = repo_id or adapter
    if adapter and base:
        artifact["base_model"] = base
    if model.get("revision") and adapter:
        artifact["base_model_revision"] = model["revision"]
    if not adapter:
        setup["include_base"] = False
    data = {
        "schema_version": 1,
        "project": {"name": name or art_name, "license": license},
        "artifacts": {art_name: artifact},
        "evals": {setup_name: setup},
    }
    head = (
        "# Drafted by `hubkit init --from-command` from a documented lm-eval command.\n"
        f"# TODO: check artifacts.{art_name}.path (the local folder of the model) and the project fields.\n"
        + "".join(f"# Note: {g}\n" for g in gaps)
    )
    path = _write_checked(head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), out, force)
    return path, block, gaps
