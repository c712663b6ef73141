"""The part of a manifest a stranger needs to re-check a published model: `eval/hubkit.json`.

Publish uploads it next to the run records: the eval setups that produced the card's numbers,
the claims, the lineage, the artifact's identity. No local path and no secret leaves the machine:
a data file is named by its sha256 (and uploaded under eval/data/ only when the setup says the
data may be published), model args are the manifest's minus secret-named keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from .manifest import Manifest
from .secrets import SECRET_KEYS

SLICE = "eval/hubkit.json"
SLICE_FORMAT = 1


def _setup_for(manifest: Manifest, setup_name: str, data_files: list[tuple[str, Path]]) -> dict:
    setup = manifest.evals[setup_name]
    out = setup.model_dump(mode="json", exclude={"include_path", "artifacts", "data"})
    out["model_args"] = {k: v for k, v in setup.model_args.items() if not SECRET_KEYS.search(k)}
    data = {}
    for task, override in setup.data.items():
        files = {}
        for split, rel in override.files.items():
            local = manifest.resolve(rel)
            from .inspection import sha256_file

            entry = {"name": local.name, "sha256": sha256_file(local) if local.is_file() else None}
            if override.publish and local.is_file():
                entry["path"] = f"eval/data/{setup_name}/{task}/{split}{''.join(local.suffixes) or '.jsonl'}"
                data_files.append((entry["path"], local))
            files[split] = entry
        data[task] = {"format": override.format, "files": files, "subtask_column": override.subtask_column, "hub_id": override.hub_id}
    out["data"] = data
    out["include_path"] = bool(setup.include_path)
    return out


def manifest_slice(manifest: Manifest, name: str, setups: list[str]) -> tuple[bytes, list[tuple[str, Path]]]:
    """(eval/hubkit.json's bytes, [(path in repo, local file)] of data files to upload with it)."""
    art = manifest.artifacts[name]
    data_files: list[tuple[str, Path]] = []
    subject = name if art.kind == "adapter" else (art.adapter or name)
    body = {
        "format": SLICE_FORMAT,
        "project": manifest.project.name,
        "artifact": {"name": name, "kind": art.kind, "repo_id": art.repo_id, "base_model": art.base_model, "base_model_revision": art.base_model_revision, "evaluated_as": subject},
        "evals": {s: _setup_for(manifest, s, data_files) for s in setups if s in manifest.evals},
        "claims": [c.model_dump(mode="json", exclude_defaults=True) for c in manifest.claims],
        "lineage": [s.model_dump(mode="json", exclude_defaults=True) for s in manifest.lineage],
    }
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode(), data_files
