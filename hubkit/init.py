"""`hubkit init`: a first manifest written from what the adapter's files say."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import HubkitError, InspectError, ManifestError, UsageError
from .inspection import inspect_adapter, inspect_checkpoint
from .manifest import load_manifest, repo_id_problem
from .templating import render_template


def _looks_local(ref: str | None) -> bool:
    if not ref:
        return False
    return ref.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(ref))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "adapter"


def _rel(path: Path, start: Path) -> str:
    """`path` relative to the manifest's folder when it lies inside it; otherwise absolute, since
    a relative path may not lead outside the manifest's folder (see hubkit.manifest)."""
    target, root = path.resolve(), start.resolve()
    if target == root or target.is_relative_to(root):
        return os.path.relpath(target, root)
    return str(target)


def init_manifest(
    adapter: str | Path,
    *,
    merged: str | Path | None = None,
    name: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    out: str | Path = "hubkit.yaml",
    force: bool = False,
) -> Path:
    """Write a starting manifest for `adapter` (and its `merged` sibling) to `out`.

    Returns the path written. Raises InspectError for unreadable inputs, and HubkitError when
    `repo_id` is not a Hub repo id or `out` exists and `force` is not set. The written file is
    validated before it is kept. A base that the adapter config names as a local folder is
    written as `base_model: null` with a TODO (and `base_model_path`): `hubkit validate`
    reports it until the base's Hub id is filled in.
    """
    adapter, out = Path(adapter), Path(out)
    if repo_id is not None:
        # The user's input, not our template: say which option is wrong before writing anything.
        problem = repo_id_problem(repo_id) or (repo_id_problem(f"{repo_id}-merged") if merged is not None else None)
        if problem:
            raise UsageError(f"--repo-id: {problem}", hint="Pass the Hub repo to publish to as --repo-id owner/name (e.g. me/my-lora).")
    if out.exists() and not force:
        raise HubkitError(f"{out}: already exists", hint="Pass --force to overwrite it, or -o another path.", path=out)
    facts = inspect_adapter(adapter, hash_files=False)
    if merged is not None:
        merged = Path(merged)
        if not (merged / "config.json").is_file():
            raise InspectError(f"{merged / 'config.json'}: missing (merged checkpoint config)", path=merged)
        inspect_checkpoint(merged, hash_files=False)

    base_ref = facts.base_model
    local_base = _looks_local(base_ref)
    name = name or adapter.resolve().name
    adapter_name = _slug(adapter.resolve().name)
    text = render_template(
        "init/hubkit.yaml.j2",
        adapter_path=str(adapter),
        name=name,
        license=license,
        adapter_name=adapter_name,
        adapter_rel=_rel(adapter, out.parent),
        repo_id=repo_id,
        base_model=None if local_base else base_ref,
        base_model_revision=facts.base_model_revision,
        base_model_path=_rel(Path(os.path.expanduser(base_ref)), out.parent) if local_base else None,
        local_base=json.dumps(base_ref) if local_base else None,  # quoted: a newline must not end the comment
        merged_rel=_rel(merged, out.parent) if merged else None,
        merged_name=f"{adapter_name}-merged",
        merged_repo_id=f"{repo_id}-merged" if repo_id else None,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_manifest(tmp)
    except ManifestError as exc:  # a bug in our template, never the user's fault
        tmp.unlink()
        raise HubkitError(f"internal: init wrote an invalid manifest: {exc}") from exc
    tmp.replace(out)
    return out
