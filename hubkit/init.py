"""`hubkit init`: a first manifest written from what the adapter's files say."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import HubkitError, InspectError, ManifestError
from .inspection import inspect_adapter, inspect_checkpoint
from .manifest import load_manifest
from .templating import render_template


def _looks_local(ref: str | None) -> bool:
    if not ref:
        return False
    return ref.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(ref))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "adapter"


def _rel(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return str(path.resolve())


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

    Returns the path written. Raises InspectError for unreadable inputs and HubkitError when
    `out` exists and `force` is not set. The written file is validated before it is kept.
    """
    adapter, out = Path(adapter), Path(out)
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
