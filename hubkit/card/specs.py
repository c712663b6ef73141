"""Facts read from an artifact's files (or its facts JSON), as the specs table shows them."""

from __future__ import annotations

import json

from ..errors import CardError
from ..manifest import Artifact, Manifest
from .numbers import fmt, human


def artifact_facts(manifest: Manifest, art: Artifact) -> dict | None:
    """Facts read from the artifact's files; from its `facts` JSON (written by `hubkit inspect
    --json`) when the files are not there (e.g. an example without weights)."""
    from ..errors import InspectError
    from ..inspection import inspect_path

    path = manifest.resolve(art.path)
    facts = None
    if path is not None and path.is_dir():
        try:
            facts = inspect_path(path, hash_files=False).to_dict()  # a card shows no hashes: do not re-read weights
        except InspectError:
            facts = None
    if facts is None and art.facts:
        fpath = manifest.resolve(art.facts)
        try:
            facts = json.loads(fpath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CardError(f"artifacts.*.facts: cannot read {fpath}: {exc}") from None
    if facts is None:
        return None
    base_params = facts.get("base_params")
    if base_params is None and art.base_model_path:
        try:
            base_params = inspect_path(manifest.resolve(art.base_model_path), hash_files=False).to_dict().get("params")
        except InspectError:
            base_params = None
    facts["base_params"] = base_params
    return facts


def specs_rows(facts: dict) -> list[list[str]]:
    if facts.get("kind") == "adapter":
        rows = [
            ["PEFT type", facts["peft_type"]],
            ["rank r", fmt(facts["r"])],
            ["alpha", fmt(facts["lora_alpha"]) + f" (scaling {fmt(facts['scaling'])}{' = α/√r, rslora' if facts['use_rslora'] else ' = α/r'})"],
            ["dropout", fmt(facts["lora_dropout"])],
            ["target modules", ", ".join(facts["module_types"] or facts["target_modules"]) + f" ({len(facts['module_types'] or facts['target_modules'])} types)"],
            ["adapted modules", fmt(facts["adapted_modules"])],
        ]
        trainable = facts["trainable_params"]
        text = f"{trainable:,} ({human(trainable)})"
        if facts.get("base_params"):
            text += f", {100 * trainable / facts['base_params']:.3f} % of the {human(facts['base_params'])} base"
        rows.append(["trainable parameters", text])
        rows.append(["weights dtype", ", ".join(facts["dtypes"])])
        if facts.get("use_dora"):
            rows.append(["DoRA", "yes"])
        if facts.get("modules_to_save"):
            rows.append(["modules saved whole", ", ".join(facts["modules_to_save"])])
        if facts.get("peft_version"):
            rows.append(["peft version", facts["peft_version"]])
        return rows
    rows = [
        ["architecture", ", ".join(facts.get("architectures") or [])],
        ["parameters", f"{facts['params']:,} ({human(facts['params'])})"],
        ["weights dtype", ", ".join(facts.get("dtypes") or [])],
        ["shards", fmt(len(facts.get("shards") or []))],
    ]
    merge = facts.get("merge_record")
    if merge:
        rows.append(["merged by", f"hubkit {merge.get('hubkit_version')} ({merge.get('method')})"])
        rows.append(["adapter sha256", (merge.get("adapter", {}).get("sha256", {}) or {}).get("adapter_model.safetensors", "")])
    return rows
