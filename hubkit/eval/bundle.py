"""What an eval unit takes along to a machine that cannot see this one (HF Jobs).

`bundle_for` copies into the unit's `inputs/` folder a manifest of its own (the setup and the
unit's adapters, every path relative), the adapters' files, the setup's local data files and
task folder, and rewrites the unit to read them there and write its records under
`outputs/runs`. The base model does not travel: it must be on the Hub (`base_model`), where the
job fetches it, pinned to `base_model_revision` when given.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml

from ..errors import EvalError
from ..manifest import Manifest

# Adapter files a job needs: config, weights, tokenizer. Never pickled weights.
_ADAPTER_FILES = ("adapter_config.json", "*.safetensors", "tokenizer*", "special_tokens_map.json", "*.model", "*.jinja", "chat_template*", "vocab*", "merges.txt", "added_tokens.json")


def bundle_for(manifest: Manifest, unit, inputs: Path):
    """Stage `unit` (an EvalUnit job) into `inputs`; returns the unit rewritten to use it.
    Raises EvalError when a subject's base is not on the Hub."""
    from ..scaleout import Unit
    from .units import EvalUnit

    (spec,) = unit.args
    assert isinstance(spec, EvalUnit)
    setup = manifest.evals[spec.setup]
    names = [s for s in spec.subjects if s != "base"]
    if spec.artifact and spec.artifact not in names:
        names.append(spec.artifact)
    if not names:  # the base alone: one adapter still names it
        names = list(setup.artifacts or [n for n, a in manifest.artifacts.items() if a.kind == "adapter"])[:1]
    artifacts = {}
    for name in names:
        art = manifest.artifact(name)
        if not art.base_model:
            raise EvalError(
                f"artifacts.{name}: hf-jobs needs the base model on the Hub (base_model), a local base_model_path cannot travel",
                hint="Set base_model to its Hub id (and base_model_revision to pin it), or run with --executor local/slurm.",
            )
        dest = inputs / "adapters" / name
        dest.mkdir(parents=True)
        src = manifest.resolve(art.path)
        for pattern in _ADAPTER_FILES:
            for f in src.glob(pattern):
                if f.is_file():
                    shutil.copy2(f, dest / f.name)
        fields = {"kind": "adapter", "path": f"adapters/{name}", "base_model": art.base_model}
        if art.base_model_revision:
            fields["base_model_revision"] = art.base_model_revision
        if art.repo_id:
            fields["repo_id"] = art.repo_id
        if art.tokenizer and not manifest.resolve(art.tokenizer).exists():
            fields["tokenizer"] = art.tokenizer  # a Hub id; a local tokenizer is in the adapter folder
        artifacts[name] = fields
    setup_data = setup.model_dump(mode="json", exclude_none=True)
    setup_data["artifacts"] = names
    for i, (task, override) in enumerate(sorted(setup.data.items())):
        files = {}
        for split, path in override.files.items():
            src = manifest.resolve(path)
            rel = Path("data") / f"{i}-{task}" / f"{split}{src.suffix}"
            (inputs / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, inputs / rel)
            files[split] = rel.as_posix()
        setup_data["data"][task]["files"] = files
    if setup.include_path:
        shutil.copytree(manifest.resolve(setup.include_path), inputs / "tasks")
        setup_data["include_path"] = "tasks"
    data = {
        "schema_version": 1,
        "project": {"name": manifest.project.name, "license": manifest.project.license, **({"license_name": manifest.project.license_name, "license_link": manifest.project.license_link} if manifest.project.license == "other" else {})},
        "artifacts": artifacts,
        "evals": {spec.setup: setup_data},
    }
    (inputs / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (inputs / "outputs" / "runs").mkdir(parents=True)
    staged = dataclasses.replace(spec, manifest="hubkit.yaml", runs_dir="outputs/runs", endpoint=None)
    return Unit(unit.id, unit.fn, (staged,), dict(unit.kwargs), unit.resources)
